package oauth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestParseBearer(t *testing.T) {
	long := strings.Repeat("a", MaxTokenSize)
	tests := []struct {
		header string
		token  string
		err    error
	}{
		{header: "Bearer abc.def.ghi", token: "abc.def.ghi"},
		{header: "bearer abc", token: "abc"},
		{header: "BEARER abc", token: "abc"},
		{header: "Bearer   abc", token: "abc"}, // 1*SP
		{header: "Bearer a-b_c~d+e/f==", token: "a-b_c~d+e/f=="},
		{header: "Bearer " + long, token: long},
		{header: "", err: ErrNoToken},
		{header: "Bearer " + long + "a", err: ErrMalformed},
		{header: "Bearer", err: ErrMalformed},
		{header: "Bearer ", err: ErrMalformed},
		{header: "Bearer    ", err: ErrMalformed},
		{header: "Bearer\tabc", err: ErrMalformed},
		{header: "Bearer abc ", err: ErrMalformed},
		{header: "Bearer abc def", err: ErrMalformed},
		{header: " Bearer abc", err: ErrMalformed},
		{header: "Basic dXNlcjpwYXNz", err: ErrMalformed},
		{header: "Bearerabc", err: ErrMalformed},
		{header: "Bearer abc,Bearer def", err: ErrMalformed},
		{header: "Bearer ===", err: ErrMalformed},
		{header: "Bearer a=b", err: ErrMalformed},
		{header: "Bearer abc\n", err: ErrMalformed},
		{header: "Bearer \"abc\"", err: ErrMalformed},
		{header: "Bearer ab%63", err: ErrMalformed},
		{header: "Bearer äbc", err: ErrMalformed},
		{header: "DPoP abc", err: ErrMalformed},
	}
	for _, tt := range tests {
		name := tt.header
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			token, err := ParseBearer(tt.header)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || token != "" {
					t.Fatalf("ParseBearer = %q, %v; want %v", token, err, tt.err)
				}
				return
			}
			if err != nil || token != tt.token {
				t.Fatalf("ParseBearer = %q, %v; want %q", token, err, tt.token)
			}
		})
	}
}

func TestBearerFromHeader(t *testing.T) {
	h := http.Header{}
	if _, err := BearerFromHeader(h); !errors.Is(err, ErrNoToken) {
		t.Fatalf("no header: %v", err)
	}
	h.Add("Authorization", "Bearer abc")
	if token, err := BearerFromHeader(h); err != nil || token != "abc" {
		t.Fatalf("one header: %q %v", token, err)
	}
	h.Add("Authorization", "Bearer def")
	if _, err := BearerFromHeader(h); !errors.Is(err, ErrMalformed) {
		t.Fatalf("two headers: %v", err)
	}
}

func FuzzParseBearer(f *testing.F) {
	for _, seed := range []string{"", "Bearer abc", "bearer a.b.c", "Bearer  x==", "Basic x", "Bearer \x00", "Bearer a=b", "Bearer " + strings.Repeat("z", MaxTokenSize)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		token, err := ParseBearer(header)
		if err != nil {
			if token != "" {
				t.Fatal("token returned with an error")
			}
			if !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected error %v", err)
			}
			if errors.Is(err, ErrNoToken) != (header == "") {
				t.Fatalf("ErrNoToken for %q", header)
			}
			return
		}
		if token == "" || len(token) > MaxTokenSize || !isB64Token(token) {
			t.Fatalf("accepted bad token %q", token)
		}
		if !strings.HasSuffix(header, token) || !strings.EqualFold(header[:7], "Bearer ") {
			t.Fatalf("token %q not at the end of a Bearer header %q", token, header)
		}
		if strings.Trim(header[6:len(header)-len(token)], " ") != "" {
			t.Fatalf("something besides spaces between scheme and token in %q", header)
		}
		// Round trip.
		if again, err := ParseBearer("Bearer " + token); err != nil || again != token {
			t.Fatalf("round trip of %q: %q %v", token, again, err)
		}
	})
}
