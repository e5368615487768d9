package sample

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"sync"
)

// RESTHandler serves the REST services of Kong's "Secure Internal MCP
// Gateway" recipe, as testdata/openapi/kong describes them: orders under
// /orders-api, inventory under /inventory-api, customers under
// /customers-api, each on a small in-memory store. An mcpBridge app per
// service serves them as tools.
func RESTHandler() http.Handler {
	s := &restStore{
		orders: map[string]*order{
			"o-1001": {ID: "o-1001", Status: "open", CustomerID: "c-1"},
			"o-1002": {ID: "o-1002", Status: "shipped", CustomerID: "c-2"},
			"o-1003": {ID: "o-1003", Status: "open", CustomerID: "c-2"},
		},
		stock: map[string]*stock{
			"widget": {SKU: "widget", Quantity: 12},
			"gadget": {SKU: "gadget", Quantity: 0},
		},
		customers: map[string]*customer{
			"c-1": {ID: "c-1", Email: "ada@example.com"},
			"c-2": {ID: "c-2", Email: "grace@example.com"},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /orders-api/orders", s.listOrders)
	mux.HandleFunc("GET /orders-api/orders/{orderId}", s.getOrder)
	mux.HandleFunc("POST /orders-api/orders/{orderId}/cancel", s.cancelOrder)
	mux.HandleFunc("GET /inventory-api/items", s.listStock)
	mux.HandleFunc("GET /inventory-api/items/{sku}", s.getStock)
	mux.HandleFunc("POST /inventory-api/items/{sku}/restock", s.restock)
	mux.HandleFunc("GET /customers-api/customers/{customerId}", s.getCustomer)
	mux.HandleFunc("PUT /customers-api/customers/{customerId}/contact", s.updateContact)
	return http.MaxBytesHandler(mux, 64<<10)
}

type order struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	CustomerID string `json:"customerId"`
}

type stock struct {
	SKU      string `json:"sku"`
	Quantity int64  `json:"quantity"`
}

type customer struct {
	ID    string  `json:"id"`
	Email string  `json:"email"`
	Phone *string `json:"phone"`
}

type restStore struct {
	mu        sync.Mutex
	orders    map[string]*order
	stock     map[string]*stock
	customers map[string]*customer
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, detail string) {
	writeJSON(w, status, map[string]any{"status": status, "detail": detail})
}

func (s *restStore) listOrders(w http.ResponseWriter, r *http.Request) {
	status := r.URL.Query().Get("status")
	limit := 100
	if l := r.URL.Query().Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			problem(w, http.StatusBadRequest, "limit: want 1 to 100")
			return
		}
		limit = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*order{}
	for _, o := range s.orders {
		if status == "" || o.Status == status {
			out = append(out, o)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	if len(out) > limit {
		out = out[:limit]
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *restStore) getOrder(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.orders[r.PathValue("orderId")]; o != nil {
		writeJSON(w, http.StatusOK, o)
		return
	}
	problem(w, http.StatusNotFound, "no such order")
}

func (s *restStore) cancelOrder(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Reason == "" {
		problem(w, http.StatusBadRequest, "reason is required")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.orders[r.PathValue("orderId")]
	switch {
	case o == nil:
		problem(w, http.StatusNotFound, "no such order")
	case o.Status != "open":
		problem(w, http.StatusConflict, "only an open order can be cancelled; this one is "+o.Status)
	default:
		o.Status = "cancelled"
		writeJSON(w, http.StatusOK, o)
	}
}

func (s *restStore) listStock(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []*stock{}
	for _, st := range s.stock {
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SKU < out[j].SKU })
	writeJSON(w, http.StatusOK, out)
}

func (s *restStore) getStock(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.stock[r.PathValue("sku")]; st != nil {
		writeJSON(w, http.StatusOK, st)
		return
	}
	problem(w, http.StatusNotFound, "no such item")
}

func (s *restStore) restock(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Quantity int64 `json:"quantity"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Quantity < 1 || in.Quantity > 1_000_000 {
		problem(w, http.StatusBadRequest, "quantity: want 1 to 1000000")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stock[r.PathValue("sku")]
	if st == nil {
		problem(w, http.StatusNotFound, "no such item")
		return
	}
	st.Quantity += in.Quantity
	writeJSON(w, http.StatusOK, st)
}

func (s *restStore) getCustomer(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.customers[r.PathValue("customerId")]; c != nil {
		writeJSON(w, http.StatusOK, c)
		return
	}
	problem(w, http.StatusNotFound, "no such customer")
}

func (s *restStore) updateContact(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Email *string `json:"email"`
		Phone *string `json:"phone"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		problem(w, http.StatusBadRequest, "want a JSON object")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.customers[r.PathValue("customerId")]
	if c == nil {
		problem(w, http.StatusNotFound, "no such customer")
		return
	}
	if in.Email != nil {
		c.Email = *in.Email
	}
	c.Phone = in.Phone
	writeJSON(w, http.StatusOK, c)
}
