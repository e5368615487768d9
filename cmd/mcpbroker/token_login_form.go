package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"

	"golang.org/x/net/html"

	"github.com/mcpbroker/mcpbroker/provider/oauth"
)

const (
	// maxPageSize bounds a login or consent page.
	maxPageSize = 1 << 20
	// maxSignInSteps bounds the pages and redirects between the
	// authorization request and the redirect to the callback.
	maxSignInSteps = 10
)

// formSigner does in place of a browser what the embedded authorization
// server's pages ask (see exchange/authserver/doc.go): it keeps the flow
// cookie, posts each form back with its hidden fields (csrf), with
// username and password on the login page and consent=allow on the
// consent page, and delivers the final redirect to the callback.
type formSigner struct {
	client      *http.Client // with a cookie jar, following no redirects itself
	origin      string       // the authorization endpoint's scheme://host: the password goes nowhere else
	redirectURI string
	username    string
	password    string
}

func newFormSigner(authorizationEndpoint, redirectURI, username, password string) *formSigner {
	jar, _ := cookiejar.New(nil)                    // never fails without options
	endpoint, _ := url.Parse(authorizationEndpoint) // checked by discoverLogin
	return &formSigner{
		client: &http.Client{
			Jar:           jar,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		origin:      origin(endpoint),
		redirectURI: redirectURI,
		username:    username,
		password:    password,
	}
}

func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// signIn follows the authorization request through the login and consent
// pages until the server redirects to the callback, and delivers that
// redirect to it.
func (s *formSigner) signIn(ctx context.Context, authorizationURL string) error {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, authorizationURL, nil)
	if err != nil {
		return fmt.Errorf("sign in: %w", err)
	}
	var signedIn, consented bool
	for range maxSignInSteps {
		at := origin(request.URL) + request.URL.Path
		response, err := s.client.Do(request)
		if err != nil {
			return fmt.Errorf("sign in: %w", err)
		}
		page, err := readPage(response)
		if err != nil {
			return fmt.Errorf("sign in: %s: %w", at, err)
		}
		forms, alert := parsePage(page)
		if response.StatusCode >= 300 && response.StatusCode < 400 {
			location, err := response.Location()
			if err != nil {
				return fmt.Errorf("sign in: %s redirected without a usable Location", at)
			}
			if origin(location)+location.Path == s.redirectURI {
				return s.deliver(ctx, location)
			}
			if err := oauth.CheckURL(location.String()); err != nil {
				return fmt.Errorf("sign in: %s redirected: %w", at, err)
			}
			if request, err = http.NewRequestWithContext(ctx, http.MethodGet, location.String(), nil); err != nil {
				return fmt.Errorf("sign in: %w", err)
			}
			continue
		}
		if response.StatusCode != http.StatusOK {
			return fmt.Errorf("sign in: %s answered %s%s", at, response.Status, colonPrefixed(alert))
		}
		form := pickForm(forms)
		switch {
		case form == nil:
			return fmt.Errorf("sign in: %s shows neither a login nor a consent form%s", at, colonPrefixed(alert))
		case form.login && signedIn:
			return fmt.Errorf("sign in refused%s", colonPrefixed(cmp.Or(alert, "the login form came back")))
		case form.login:
			form.fields.Set("username", s.username)
			form.fields.Set("password", s.password)
			signedIn = true
		case consented:
			return fmt.Errorf("consent not accepted%s", colonPrefixed(cmp.Or(alert, "the consent form came back")))
		default:
			form.fields.Set("consent", "allow")
			consented = true
		}
		action, err := response.Request.URL.Parse(form.action)
		if err != nil {
			return fmt.Errorf("sign in: %s: the form's action %q is not a url", at, form.action)
		}
		if origin(action) != s.origin {
			return fmt.Errorf("sign in: %s: the form posts to %s, not to the authorization server; refusing to send it there", at, origin(action))
		}
		request, err = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.fields.Encode()))
		if err != nil {
			return fmt.Errorf("sign in: %w", err)
		}
		request.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return fmt.Errorf("sign in: no redirect to %s after %d pages and redirects", s.redirectURI, maxSignInSteps)
}

// deliver hands the final redirect to the callback listener, as the
// browser would, without the authorization server's cookies.
func (s *formSigner) deliver(ctx context.Context, location *url.URL) error {
	request, err := http.NewRequestWithContext(ctx, http.MethodGet, location.String(), nil)
	if err != nil {
		return fmt.Errorf("deliver the redirect: %w", err)
	}
	response, err := http.DefaultClient.Do(request)
	if err != nil {
		return fmt.Errorf("deliver the redirect to %s: %w", s.redirectURI, err)
	}
	defer response.Body.Close()
	// The callback turns away a redirect that does not answer this login
	// and goes on waiting; nothing else would come, so stop here.
	if response.StatusCode != http.StatusOK {
		refusal, _ := io.ReadAll(io.LimitReader(response.Body, 1<<10))
		return fmt.Errorf("the callback refused the redirect: %s", printable(strings.TrimPrefix(strings.TrimSpace(string(refusal)), "mcpbroker: ")))
	}
	return nil
}

func readPage(response *http.Response) ([]byte, error) {
	defer response.Body.Close()
	page, err := io.ReadAll(io.LimitReader(response.Body, maxPageSize+1))
	if err != nil {
		return nil, fmt.Errorf("read the page: %w", err)
	}
	if len(page) > maxPageSize {
		return nil, fmt.Errorf("the page is larger than %d bytes", maxPageSize)
	}
	return page, nil
}

// htmlForm is a form of a page: where it posts, its hidden fields and
// which step of the sign-in it is.
type htmlForm struct {
	action  string
	post    bool
	fields  url.Values // the hidden inputs
	login   bool       // has username and password inputs
	consent bool       // has a consent=allow button
}

// pickForm returns the first login or consent form that posts, or nil.
func pickForm(forms []*htmlForm) *htmlForm {
	for _, form := range forms {
		if form.post && (form.login || form.consent) {
			return form
		}
	}
	return nil
}

// parsePage returns the forms of page and the text of its first
// role="alert" element, where the server says what went wrong.
func parsePage(page []byte) (forms []*htmlForm, alert string) {
	tokenizer := html.NewTokenizer(bytes.NewReader(page))
	var form *htmlForm
	var hasUsername, hasPassword bool
	var alertTag string // the open alert element's tag
	var alertText strings.Builder
	alertDone := false
	for {
		kind := tokenizer.Next()
		switch kind {
		case html.ErrorToken: // the end of the page, or a page too broken to read on
			return forms, strings.Join(strings.Fields(alertText.String()), " ")
		case html.TextToken:
			if alertTag != "" {
				alertText.Write(tokenizer.Text())
			}
		case html.EndTagToken:
			name, _ := tokenizer.TagName()
			switch string(name) {
			case "form":
				form = nil
			case alertTag:
				alertTag, alertDone = "", true
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			token := tokenizer.Token()
			attributes := make(map[string]string, len(token.Attr))
			for _, attribute := range token.Attr {
				attributes[attribute.Key] = attribute.Val
			}
			if !alertDone && alertTag == "" && kind == html.StartTagToken && attributes["role"] == "alert" {
				alertTag = token.Data
			}
			switch token.Data {
			case "form":
				form = &htmlForm{action: attributes["action"], post: strings.EqualFold(attributes["method"], "post"), fields: url.Values{}}
				hasUsername, hasPassword = false, false
				forms = append(forms, form)
			case "input":
				if form == nil {
					continue
				}
				name, kind := attributes["name"], strings.ToLower(attributes["type"])
				switch {
				case kind == "hidden" && name != "":
					form.fields.Add(name, attributes["value"])
				case name == "username":
					hasUsername = true
				case name == "password":
					hasPassword = true
				case kind == "submit" && name == "consent" && attributes["value"] == "allow":
					form.consent = true
				}
				form.login = hasUsername && hasPassword
			case "button":
				if form != nil && attributes["name"] == "consent" && attributes["value"] == "allow" {
					form.consent = true
				}
			}
		}
	}
}

func colonPrefixed(s string) string {
	if s == "" {
		return ""
	}
	return ": " + printable(s)
}
