package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpbroker/mcpbroker/provider/jsonrpc"
)

// Every request of a session carries the token its source supplies, asked
// for per HTTP request; a call's own Authorization, even an empty one,
// replaces it; a source that fails stops the request before it is sent.
func TestTokenSource(t *testing.T) {
	errNoToken := errors.New("no token today")
	bearer := func(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }
	tests := []struct {
		name    string
		failing bool // the source fails
		handler func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int)
		run     func(ctx context.Context, s *Session) error
		want    []string // the Authorization of each request, in order
		wantErr error
	}{
		{
			name: "initialize and its notification",
			run: func(ctx context.Context, s *Session) error {
				if _, err := s.Call(ctx, request(t, "initialize", map[string]any{}), nil, nil); err != nil {
					return err
				}
				return s.Send(ctx, &jsonrpc.Message{Method: "notifications/initialized"}, nil)
			},
			want: []string{"Bearer session-1", "Bearer session-2"},
		},
		{
			name: "a call's own token",
			run: func(ctx context.Context, s *Session) error {
				_, err := s.Call(ctx, request(t, "tools/call", map[string]any{}), bearer("per-call"), nil)
				return err
			},
			want: []string{"Bearer per-call"},
		},
		{
			name: "a call without any token",
			run: func(ctx context.Context, s *Session) error {
				_, err := s.Call(ctx, request(t, "tools/call", map[string]any{}), http.Header{"Authorization": nil}, nil)
				return err
			},
			want: []string{""},
		},
		{
			name: "a resumed call stream carries the session's token",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				if r.Method == http.MethodPost {
					startStream(w)
					event(w, "id: s_0\nretry: 10\ndata:\n\n")
					panic(http.ErrAbortHandler)
				}
				startStream(w)
				event(w, "id: s_1\ndata: "+`{"jsonrpc":"2.0","id":2001,"result":{}}`+"\n\n")
			},
			run: func(ctx context.Context, s *Session) error {
				_, err := s.Call(ctx, &jsonrpc.Message{ID: jsonrpc.Int64ID(2001), Method: "tools/call", Params: []byte(`{}`)}, bearer("per-call"), nil)
				return err
			},
			want: []string{"Bearer per-call", "Bearer session-1"},
		},
		{
			name: "every reconnection of the GET stream asks again",
			handler: func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
				startStream(w)
				event(w, fmt.Sprintf("retry: 10\nid: %d\ndata: %s\n\n", n, progressEvent))
				if n == 3 {
					<-r.Context().Done()
				}
			},
			run: func(ctx context.Context, s *Session) error {
				ctx, cancel := context.WithCancel(ctx)
				defer cancel()
				seen := 0
				err := s.Listen(ctx, nil, func(*jsonrpc.Message) {
					if seen++; seen == 3 {
						cancel()
					}
				})
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			},
			want: []string{"Bearer session-1", "Bearer session-2", "Bearer session-3"},
		},
		{
			name: "DELETE",
			run:  func(ctx context.Context, s *Session) error { return s.Close(ctx, nil) },
			want: []string{"Bearer session-1"},
		},
		{
			name:    "a failing source sends nothing",
			failing: true,
			run: func(ctx context.Context, s *Session) error {
				_, err := s.Call(ctx, request(t, "tools/list", map[string]any{}), nil, nil)
				return err
			},
			wantErr: errNoToken,
		},
		{
			name:    "a failing source ends the GET stream",
			failing: true,
			run:     func(ctx context.Context, s *Session) error { return s.Listen(ctx, nil, nil) },
			wantErr: ErrCredentials,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{}
			handler := tt.handler
			if handler == nil {
				handler = func(w http.ResponseWriter, r *http.Request, m *jsonrpc.Message, n int) {
					switch {
					case r.Method == http.MethodDelete:
						w.WriteHeader(http.StatusNoContent)
					case m.Kind() == jsonrpc.KindRequest:
						w.Header().Set(headerSessionID, fixtureSessionID)
						writeJSON(w, http.StatusOK, resultFor(m, `{"protocolVersion":"`+testProtocolVersion+`"}`))
					default:
						w.WriteHeader(http.StatusAccepted)
					}
				}
			}
			ts := serve(t, f, handler)
			var asked atomic.Int32
			s, err := NewSession(&Options{URL: ts.URL, Client: NewHTTPClient(HTTPOptions{DialTimeout: time.Second}),
				Token: func(context.Context) (string, error) {
					n := asked.Add(1)
					if tt.failing {
						return "", errNoToken
					}
					return fmt.Sprintf("session-%d", n), nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			s.SetID(fixtureSessionID)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err = tt.run(ctx, s)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil && !errors.Is(err, ErrCredentials) {
				t.Errorf("error %v is not ErrCredentials", err)
			}
			var got []string
			for _, r := range f.recorded() {
				got = append(got, r.Header.Get("Authorization"))
				if len(r.Header.Values("Authorization")) > 1 {
					t.Errorf("%s carried %d Authorization headers", r.Method, len(r.Header.Values("Authorization")))
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Authorization of each request %q, want %q", got, tt.want)
			}
		})
	}
}
