package config

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

func (v *validator) http(http *HTTP) {
	if message := hostPortProblem(http.Address); message != "" {
		v.add("http.address", message)
	}
	v.trustedProxies(http)
	if tls := http.TLS; tls != nil {
		switch {
		case tls.CertFile != "" && tls.KeyFile == "":
			v.add("http.tls.keyFile", "required when certFile is set")
		case tls.CertFile == "" && tls.KeyFile != "":
			v.add("http.tls.certFile", "required when keyFile is set")
		}
		switch tls.ClientAuth {
		case "", "require", "verifyIfGiven":
			if tls.ClientAuth != "" && tls.ClientCA == "" {
				v.add("http.tls.clientAuth", "needs clientCA, the CAs client certificates must chain to")
			}
		default:
			v.add("http.tls.clientAuth", fmt.Sprintf(`want "require" or "verifyIfGiven", got %s`, quote(tls.ClientAuth)))
		}
		if tls.ClientCA != "" && tls.CertFile == "" {
			v.add("http.tls.clientCA", "needs certFile and keyFile: client certificates are asked for over TLS")
		}
	}
	for i, host := range http.AllowedHosts {
		if strings.TrimSpace(host) == "" {
			v.add(index("http.allowedHosts", i), "must not be empty")
		}
	}
	for i, origin := range http.AllowedOrigins {
		if message := originProblem(origin); message != "" {
			v.add(index("http.allowedOrigins", i), message)
		}
	}
	if http.MaxBodyBytes < minBodyBytes || http.MaxBodyBytes > maxBodyBytes {
		v.add("http.maxBodyBytes", fmt.Sprintf("must be between %d (1 KiB) and %d (64 MiB), got %d", minBodyBytes, maxBodyBytes, http.MaxBodyBytes))
	}
	if http.ShutdownTimeout < 0 {
		v.add("http.shutdownTimeout", "must not be negative")
	}
	if d := time.Duration(http.ReadBodyTimeout); d < time.Second || d > 10*time.Minute {
		v.add("http.readBodyTimeout", fmt.Sprintf("must be between 1s and 10m, got %s", d))
	}
	if http.MaxConnections < 1 {
		v.add("http.maxConnections", fmt.Sprintf("must be at least 1, got %d", http.MaxConnections))
	}
	switch {
	case http.MaxConnectionsPerAddress < 1:
		v.add("http.maxConnectionsPerAddress", fmt.Sprintf("must be at least 1, got %d", http.MaxConnectionsPerAddress))
	case http.MaxConnections >= 1 && http.MaxConnectionsPerAddress > http.MaxConnections:
		v.add("http.maxConnectionsPerAddress", fmt.Sprintf("must not exceed http.maxConnections (%d), got %d", http.MaxConnections, http.MaxConnectionsPerAddress))
	}
}

func (v *validator) trustedProxies(http *HTTP) {
	for i, entry := range http.TrustedProxies {
		if _, err := ParseNetwork(entry); err != nil {
			v.add(index("http.trustedProxies", i), fmt.Sprintf("want a CIDR such as 10.0.0.0/8 or an IP address, got %s", quote(entry)))
		}
	}
	if http.ForwardedHost && len(http.TrustedProxies) == 0 {
		v.add("http.forwardedHost", "needs http.trustedProxies: forwarded hosts are believed only from trusted proxies")
	}
}

// ParseNetwork reads a trusted proxy entry: a CIDR, or one IP address.
func ParseNetwork(entry string) (netip.Prefix, error) {
	if prefix, err := netip.ParsePrefix(entry); err == nil {
		return prefix.Masked(), nil
	}
	addr, err := netip.ParseAddr(entry)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen()), nil
}

func (v *validator) storage(storage *Storage) {
	if storage.Bolt != nil && storage.Redis != nil {
		v.add("storage", "set bolt or redis, not both")
	}
	if bolt := storage.Bolt; bolt != nil && strings.TrimSpace(bolt.Path) == "" {
		v.add("storage.bolt.path", "required")
	}
	if redis := storage.Redis; redis != nil {
		switch {
		case redis.Cluster && redis.MasterName != "":
			v.add("storage.redis", "set cluster or masterName (sentinels), not both")
		case redis.Cluster && redis.DB != 0:
			v.add("storage.redis.db", "a cluster has only database 0")
		case !redis.Cluster && redis.MasterName == "" && len(redis.Addresses) > 1:
			v.add("storage.redis.addresses", "one address for a single server; several need cluster: true or masterName (sentinels)")
		}
		if t := redis.TLS; t != nil && !t.Enabled && (t.CAFile != "" || t.ServerName != "") {
			v.add("storage.redis.tls", "caFile and serverName have no effect unless enabled is true")
		}
		if len(redis.Addresses) == 0 {
			v.add("storage.redis.addresses", "at least one address is required")
		}
		for i, address := range redis.Addresses {
			message := hostPortProblem(address)
			if message == "" && strings.HasPrefix(address, ":") {
				message = fmt.Sprintf("want host:port with a host, got %s", quote(address))
			}
			if message != "" {
				v.add(index("storage.redis.addresses", i), message)
			}
		}
		if redis.DB < 0 {
			v.add("storage.redis.db", "must not be negative")
		}
	}
}
