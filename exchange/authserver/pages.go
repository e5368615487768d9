package authserver

import (
	"bytes"
	"html/template"
	"log/slog"
	"net/http"
)

// The pages of /authorize are plain HTML forms, without scripts or
// external assets, so that a browser with JavaScript off, and a test with
// a cookie jar, can drive them. Field names are documented in doc.go.

const pageStyle = `body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d1d1f;margin:0}
main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1rem;margin-bottom:.3rem}
label{display:block;margin-top:1rem;font-weight:600}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;margin-top:.3rem;font-size:1rem}
button{margin-top:1.5rem;padding:.55rem 1.2rem;font-size:1rem;border-radius:4px;border:1px solid #888;cursor:pointer}
button.primary{background:#1f5fbf;color:#fff;border-color:#1f5fbf}
.error{background:#fdecea;color:#8a1c13;padding:.6rem;border-radius:4px}
.note{color:#555;font-size:.9rem}code{word-break:break-all}
pre{background:#f4f5f7;padding:.6rem;border-radius:4px;white-space:pre-wrap;word-break:break-all;max-height:24rem;overflow:auto}
dt{font-weight:600;margin-top:.4rem}dd{margin-left:0}`

var pages = template.Must(template.New("pages").Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer"><title>{{.Title}}</title><style>` + pageStyle + `</style></head>
<body><main>{{end}}
{{define "foot"}}</main></body></html>{{end}}

{{define "signin-form"}}{{if .Message}}<p class="error" role="alert">{{.Message}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="username">Username</label>
<input id="username" type="text" name="username" value="{{.Username}}" autocomplete="username" autocapitalize="none" required autofocus>
<label for="password">Password</label>
<input id="password" type="password" name="password" autocomplete="current-password" required>
<button class="primary" type="submit">Sign in</button>
</form>{{end}}

{{define "login"}}{{template "head" .}}
<h1>Sign in</h1>
<p>to continue to <strong>{{.ClientName}}</strong></p>
{{template "signin-form" .}}
{{template "foot" .}}{{end}}

{{define "consent"}}{{template "head" .}}
<h1>Allow access?</h1>
<p><strong>{{.ClientName}}</strong> wants to act on your behalf, <strong>{{.User}}</strong>.</p>
{{if .ClientHost}}<p class="note">This application describes itself in a document at <strong>{{.ClientHost}}</strong>; only that host is verified, not its name. After your answer you return to <code>{{.RedirectTo}}</code>.</p>
{{else if .Registered}}<p class="note">This application registered itself; its name is not verified. After your answer you return to <code>{{.RedirectTo}}</code>.</p>{{end}}
<h2>Resource</h2>
<p><code>{{.Resource}}</code></p>
<h2>Permissions</h2>
<ul>{{range .Scopes}}<li><code>{{.}}</code></li>{{else}}<li>none beyond your identity</li>{{end}}</ul>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button class="primary" type="submit" name="consent" value="allow">Allow</button>
<button type="submit" name="consent" value="deny">Deny</button>
</form>
{{template "foot" .}}{{end}}

{{define "approval-login"}}{{template "head" .}}
<h1>Sign in to answer</h1>
<p>A call by an agent is waiting for approval. Sign in as an approver to see it.</p>
{{template "signin-form" .}}
{{template "foot" .}}{{end}}

{{define "approval"}}{{template "head" .}}
<h1>Approve this call?</h1>
<p>Signed in as <strong>{{.Approver}}</strong>.</p>
{{if .Reason}}<p class="note">{{.Reason}}</p>{{end}}
<dl>
<dt>For user</dt><dd><code>{{.Subject}}</code></dd>
<dt>By agent</dt><dd><code>{{.Client}}</code></dd>
<dt>App</dt><dd><code>{{.App}}</code></dd>
<dt>Tool</dt><dd><code>{{.Tool}}</code></dd>
<dt>Approvers</dt><dd>{{.Approvers}}</dd>
<dt>Waits until</dt><dd>{{.Deadline}}</dd>
</dl>
<h2>Arguments</h2>
<pre id="arguments">{{.Arguments}}</pre>
<p class="note">Arguments digest <code>{{.ArgumentsDigest}}</code>. Approving lets the agent make exactly this call, once, within {{.TTL}}.</p>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button class="primary" type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="deny">Deny</button>
</form>
{{template "foot" .}}{{end}}

{{define "approval-done"}}{{template "head" .}}
<h1>{{.Title}}</h1>
<p role="status">{{.Message}}</p>
{{template "foot" .}}{{end}}

{{define "error"}}{{template "head" .}}
<h1>{{.Title}}</h1>
<p class="error" role="alert">{{.Message}}</p>
<p class="note">Return to the application and start again.</p>
{{template "foot" .}}{{end}}
`))

type loginPage struct {
	Title      string
	ClientName string
	Message    string
	Action     string
	CSRF       string
	Username   string
}

type consentPage struct {
	Title      string
	ClientName string
	User       string
	Registered bool
	// ClientHost is the host of a client_id URL, for a client described by
	// its metadata document.
	ClientHost string
	RedirectTo string
	Resource   string
	Scopes     []string
	Action     string
	CSRF       string
}

type approvalPage struct {
	Title, Approver, Reason, Subject, Client, App, Tool, Approvers string
	Deadline, TTL, Arguments, ArgumentsDigest                      string
	Action, CSRF                                                   string
}

type errorPage struct {
	Title   string
	Message string
}

// renderPage writes one of the pages. The pages show nothing that may be
// cached or framed.
func (s *Server) renderPage(w http.ResponseWriter, status int, name string, data any) {
	var body bytes.Buffer
	if err := pages.ExecuteTemplate(&body, name, data); err != nil {
		s.logger.Error("authserver: render page", slog.String("page", name), slog.Any("error", err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	header := w.Header()
	header.Set("Content-Type", "text/html; charset=utf-8")
	header.Set("Cache-Control", "no-store")
	header.Set("Pragma", "no-cache")
	header.Set("X-Frame-Options", "DENY")
	header.Set("X-Content-Type-Options", "nosniff")
	header.Set("Referrer-Policy", "no-referrer")
	// No form-action: browsers apply it to the redirect that follows a
	// form post, which goes to the client.
	header.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(body.Bytes())
}

// renderError shows an error that must not go back to the client: an
// unknown client, a redirect URI that does not match, a form that cannot
// be verified.
func (s *Server) renderError(w http.ResponseWriter, status int, title, message string) {
	s.renderPage(w, status, "error", errorPage{Title: title, Message: message})
}
