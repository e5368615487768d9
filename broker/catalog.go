package broker

import (
	"time"

	"github.com/mcpbroker/mcpbroker/apps"
	"github.com/mcpbroker/mcpbroker/broker/config"
)

// catalogOptions describes the configured apps to the apps package, which
// knows nothing of the configuration file.
func catalogOptions(list []config.App) []apps.Options {
	out := make([]apps.Options, 0, len(list))
	for _, a := range list {
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
		out = append(out, o)
	}
	return out
}
