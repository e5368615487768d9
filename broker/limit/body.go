package limit

import (
	"io"
	"net/http"
	"sync"
	"time"
)

// BodyDeadline gives every request that has a body timeout to send all of
// it: the connection's read deadline is set before the handler runs and
// lifted once the body has been read to its end, so a body trickled in a
// byte at a time is cut off while the response that follows (an event
// stream, say) may take as long as it needs. Requests without a body are
// passed through untouched. The deadline is set and lifted here, for each
// request with a body, rather than left to http.Server.ReadTimeout, so that
// no response ever runs under a read deadline, whatever a Go release does
// with that deadline once the body is read (some have canceled the
// request's context when it passed).
func BodyDeadline(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body == nil || r.Body == http.NoBody || (r.ContentLength == 0 && len(r.TransferEncoding) == 0) {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			next.ServeHTTP(w, r) // not a connection that has deadlines
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline when the body ends.
type deadlineBody struct {
	io.ReadCloser
	once sync.Once
	lift func()
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(b.lift)
	}
	return n, err
}
