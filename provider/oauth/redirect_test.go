package oauth

import "testing"

func TestCheckRedirectURI(t *testing.T) {
	tests := []struct {
		uri string
		ok  bool
	}{
		{"https://app.example/callback", true},
		{"http://127.0.0.1:8765/callback", true},
		{"http://[::1]:8765/callback", true},
		{"http://localhost/callback", true},
		{"http://LOCALHOST./callback", true},
		{"http://app.example/callback", false},
		{"http://127.0.0.1.nip.io/callback", false},
		{"https://app.example/callback#fragment", false},
		{"https://user@app.example/callback", false},
		{"/callback", false},
		{"app.example/callback", false},
		{"custom:callback", false},
		{"javascript://app.example/%0aalert(1)", false},
		{"https://app.example:bad/", false},
	}
	for _, test := range tests {
		t.Run(test.uri, func(t *testing.T) {
			if err := CheckRedirectURI(test.uri); (err == nil) != test.ok {
				t.Errorf("CheckRedirectURI(%q) = %v, want ok %v", test.uri, err, test.ok)
			}
		})
	}
}
