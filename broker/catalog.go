package broker

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/broker/config"
)

// catalogOptions describes the configured apps to the apps package, which
// knows nothing of the configuration file; it reads the files they name.
func catalogOptions(list []config.App, files pemFiles) ([]apps.Options, error) {
	out := make([]apps.Options, 0, len(list))
	for i, a := range list {
		o := apps.Options{Name: a.Name, Timeout: time.Duration(a.Upstream.Timeout), Prefix: a.Name + "_"}
		if ns := a.ToolNamespace; ns != nil {
			o.Prefix = ""
			if !ns.Disabled {
				o.Prefix = ns.Name
			}
		}
		if s := a.Upstream.Stream; s != nil {
			o.URL = s.URL
			c := s.Connection
			o.DialTimeout, o.KeepAlive = time.Duration(c.DialTimeout), time.Duration(c.KeepAlive.Interval)
			o.MaxIdleConns, o.MaxIdleConnsPerHost = c.Pool.MaxIdleConns, c.Pool.MaxIdleConnsPerHost
		}
		if ns := a.ResourceNamespace; ns != nil {
			o.URIPrefixes = ns.URIPrefixes
		}
		if lc := a.ListCache; lc != nil {
			o.ListCache = apps.ListCacheOptions{Disabled: lc.Disabled, Shared: lc.Scope == config.ListCacheShared, TTL: time.Duration(lc.TTL)}
		}
		var err error
		if o.TLS, err = files.upstreamTLS(fmt.Sprintf("apps[%d].upstream.tls", i), a.Upstream.TLS); err != nil {
			return nil, err
		}
		if p := a.Upstream.Proxy; p != nil {
			o.Proxy = http.ProxyFromEnvironment
			if p.URL != "" {
				proxy, err := url.Parse(p.URL)
				if err != nil {
					return nil, fmt.Errorf("broker: apps[%d].upstream.proxy.url: %w", i, err)
				}
				o.Proxy = http.ProxyURL(proxy)
			}
		}
		out = append(out, o)
	}
	return out, nil
}
