package oauth

import "context"

type principalKey struct{}

// WithPrincipal returns ctx carrying the principal an access token was
// verified for, as authentication middleware passes it on.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal ctx carries; nil when the request
// was not authenticated.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}
