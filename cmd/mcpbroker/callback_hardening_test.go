package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Any web page the user opens during a login can send the browser to the
// loopback callback. A redirect that does not carry the login's state must
// not end the login: the authorization server's redirect still gets through.
func TestTokenLoginCallbackIgnoresForeignState(t *testing.T) {
	flow := &codeFlow{metadata: &loginMetadata{Issuer: "https://as.example", IssParameterSupported: true}, state: "the-state"}
	results := make(chan callbackResult, 1)
	handler := flow.callbackHandler(results)
	get := func(query string) *httptest.ResponseRecorder {
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, "/callback?"+query, nil))
		return recorder
	}
	for _, query := range []string{
		"code=forged&state=guess&iss=https%3A%2F%2Fas.example",
		"error=access_denied&iss=https%3A%2F%2Fevil.example",
		"code=forged",
	} {
		if got := get(query); got.Code != http.StatusBadRequest {
			t.Errorf("%s: %d, want %d", query, got.Code, http.StatusBadRequest)
		}
		if got := get(query).Header().Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: X-Content-Type-Options %q, want nosniff", query, got)
		}
	}
	if len(results) != 0 {
		t.Fatalf("a redirect without the login's state decided the login: %+v", <-results)
	}
	if got := get("code=c&state=the-state&iss=https%3A%2F%2Fas.example"); got.Code != http.StatusOK {
		t.Errorf("the authorization server's redirect: %d %q", got.Code, got.Body.String())
	}
	if result := <-results; result.err != nil || result.code != "c" {
		t.Errorf("result %+v, want code c", result)
	}
}
