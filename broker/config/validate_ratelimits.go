package config

import (
	"fmt"
	"slices"
	"time"
)

// Bounds of rate limits.
const (
	maxRateLimitRules  = 1000
	minRateLimitPeriod = Duration(time.Second)
	maxRateLimitPeriod = Duration(24 * time.Hour)
	maxRateLimitCount  = 1_000_000
)

// rateLimitKeys are what a rule's budget may be per.
var rateLimitKeys = []string{"subject", "client", "app", "tool"}

func (v *validator) rateLimits(limits *RateLimits, apps []App) {
	switch limits.OnStoreFailure {
	case RateLimitsOpen, RateLimitsClosed:
	default:
		v.add("rateLimits.onStoreFailure", fmt.Sprintf("want %q or %q, got %s", RateLimitsOpen, RateLimitsClosed, quote(limits.OnStoreFailure)))
	}
	if len(limits.Rules) > maxRateLimitRules {
		v.add("rateLimits.rules", fmt.Sprintf("at most %d rules, got %d", maxRateLimitRules, len(limits.Rules)))
	}
	appNamed := func(name string) bool {
		return slices.ContainsFunc(apps, func(a App) bool { return a.Name == name })
	}
	firstByName := map[string]int{}
	for i, rule := range limits.Rules {
		path := index("rateLimits.rules", i)
		switch first, duplicate := firstByName[rule.Name]; {
		case rule.Name == "":
			v.add(field(path, "name"), "required: it names the budget in errors, metrics and audit records")
		case duplicate:
			v.add(field(path, "name"), fmt.Sprintf("duplicate name %s, also used by rateLimits.rules[%d]", quote(rule.Name), first))
		default:
			firstByName[rule.Name] = i
		}
		if rule.Match.App != "" && !appNamed(rule.Match.App) {
			v.add(field(path, "match.app"), fmt.Sprintf("no app named %s", quote(rule.Match.App)))
		}
		for j, key := range rule.Per {
			if !slices.Contains(rateLimitKeys, key) {
				v.add(index(field(path, "per"), j), fmt.Sprintf("want one of subject, client, app, tool, got %s", quote(key)))
			}
		}
		if rule.Rate < 1 || rule.Rate > maxRateLimitCount {
			v.add(field(path, "rate"), fmt.Sprintf("want 1 to %d calls per period, got %d", maxRateLimitCount, rule.Rate))
		}
		if rule.Period < minRateLimitPeriod || rule.Period > maxRateLimitPeriod {
			v.add(field(path, "period"), fmt.Sprintf("must be between %s and %s, got %s", minRateLimitPeriod, maxRateLimitPeriod, rule.Period))
		}
		if rule.Burst < 1 || rule.Burst > maxRateLimitCount {
			v.add(field(path, "burst"), fmt.Sprintf("want 1 to %d calls, got %d", maxRateLimitCount, rule.Burst))
		}
	}
	seen := map[string]int{}
	for i, limit := range limits.Concurrency {
		path := index("rateLimits.concurrency", i)
		switch first, duplicate := seen[limit.App]; {
		case !appNamed(limit.App):
			v.add(field(path, "app"), fmt.Sprintf("no app named %s", quote(limit.App)))
		case duplicate:
			v.add(field(path, "app"), fmt.Sprintf("app %s is limited by rateLimits.concurrency[%d] already", quote(limit.App), first))
		default:
			seen[limit.App] = i
		}
		if limit.Max < 1 || limit.Max > maxRateLimitCount {
			v.add(field(path, "max"), fmt.Sprintf("want 1 to %d calls in flight, got %d", maxRateLimitCount, limit.Max))
		}
	}
}
