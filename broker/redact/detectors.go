package redact

import (
	"encoding/base64"
	"encoding/json"
	"math/big"
	"regexp"
	"strings"
)

// all are the detectors, in the order Kinds lists them.
var all = []detector{
	{"aws-access-key", windowed(at("AKIA", "ASIA", "ABIA", "ACCA"), 1, 22, `\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b`, nil)},
	{"private-key", findPrivateKeys},
	{"jwt", windowed(at("eyJ"), 1, maxToken, `\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}`, isJWT)},
	{"github-token", windowed(at("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), 1, 100, `\b(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82})\b`, nil)},
	{"slack-token", windowed(at("xox"), 1, 256, `\bxox[abprs]-[A-Za-z0-9-]{10,}`, nil)},
	{"stripe-key", windowed(at("_live_"), 3, 256, `\b(?:sk|rk)_live_[A-Za-z0-9]{24,}`, nil)},
	{"google-api-key", windowed(at("AIza"), 1, 40, `\bAIza[0-9A-Za-z_-]{35}`, nil)},
	{"payment-card", findCards},
	{"iban", windowed(ibanStart, 1, 48, `\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b`, isIBAN)},
	{"email", windowed(at("@"), 65, 256, `[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*\.[A-Za-z]{2,24}\b`, nil)},
	{"phone", windowed(at("+"), 1, 32, `\+[1-9][0-9]{0,3}(?:[ -]?[0-9]{1,5}){2,5}\b`, isPhone)},
	{"us-ssn", findSSNs},
}

// maxToken bounds a JWT the detector looks at.
const maxToken = 16 << 10

// A trigger returns the index, at or after from, of the next place in
// text where a match may be near; -1 when there is none. Every match
// holds a trigger, so the costlier pattern runs only around them.
type trigger func(text string, from int) int

// at triggers on any of the strings every match holds.
func at(needles ...string) trigger {
	return func(text string, from int) int {
		next := -1
		for _, n := range needles {
			if i := strings.Index(text[from:], n); i >= 0 && (next < 0 || from+i < next) {
				next = from + i
			}
		}
		return next
	}
}

// windowed runs pattern on the text from back bytes before each trigger
// to fwd bytes after it, and keeps the matches that contain the trigger
// and that valid (if any) accepts. The byte before a window stays in it,
// so \b sees the real text.
func windowed(next trigger, back, fwd int, pattern string, valid func(string) bool) func(Kind, string, []Finding) []Finding {
	re := regexp.MustCompile(pattern)
	return func(kind Kind, text string, dst []Finding) []Finding {
		covered := 0 // the end of the last finding
		for from := 0; from < len(text); {
			t := next(text, from)
			if t < 0 {
				break
			}
			from = t + 1
			if t < covered {
				continue
			}
			lo, hi := max(0, t-back), min(len(text), t+fwd)
			for _, m := range re.FindAllStringIndex(text[lo:hi], -1) {
				start, end := lo+m[0], lo+m[1]
				if start > t || end <= t || start < covered {
					continue
				}
				if valid == nil || valid(text[start:end]) {
					dst = append(dst, Finding{Kind: kind, Start: start, End: end})
					covered, from = end, end
				}
			}
		}
		return dst
	}
}

// isJWT accepts a token whose header is a JSON object naming an alg.
func isJWT(token string) bool {
	header, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(raw, &h) == nil && h.Alg != ""
}

// findCards finds runs of 13 to 19 digits, in groups split by single
// spaces or dashes, with a card issuer's prefix and a valid Luhn digit.
func findCards(kind Kind, text string, dst []Finding) []Finding {
	for i := 0; i < len(text); i++ {
		if !isDigit(text[i]) || (i > 0 && (isDigit(text[i-1]) || isWordByte(text[i-1]))) {
			continue
		}
		var digits [19]byte
		n, end, j := 0, i, i
		for j < len(text) && n < 20 {
			c := text[j]
			switch {
			case isDigit(c):
				if n < len(digits) {
					digits[n] = c
				}
				n++
				j++
				end = j
				continue
			case (c == ' ' || c == '-') && j+1 < len(text) && isDigit(text[j+1]) && j > i:
				j++
				continue
			}
			break
		}
		if n >= 13 && n <= 19 && (end == len(text) || !isWordByte(text[end])) && cardIssuer(digits[:n]) && luhn(digits[:n]) {
			dst = append(dst, Finding{Kind: kind, Start: i, End: end})
			i = end - 1
			continue
		}
		for i+1 < len(text) && isDigit(text[i+1]) { // past this run
			i++
		}
	}
	return dst
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isWordByte(c byte) bool {
	return isDigit(c) || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_'
}

// cardIssuer reports whether a number starts as the major networks'
// cards do: Visa, Mastercard, American Express, Discover, JCB, Diners.
func cardIssuer(d []byte) bool {
	prefix := func(n int) int {
		v := 0
		for _, c := range d[:n] {
			v = v*10 + int(c-'0')
		}
		return v
	}
	switch p2, p4 := prefix(2), prefix(4); {
	case d[0] == '4':
		return len(d) == 13 || len(d) == 16 || len(d) == 19
	case p2 >= 51 && p2 <= 55, p4 >= 2221 && p4 <= 2720:
		return len(d) == 16
	case p2 == 34 || p2 == 37:
		return len(d) == 15
	case p4 == 6011, p2 == 65, p4 >= 3528 && p4 <= 3589:
		return len(d) >= 16
	case p2 == 36 || p2 == 38 || p2 == 39 || (p4 >= 3000 && p4 <= 3059):
		return len(d) >= 14
	}
	return false
}

func luhn(d []byte) bool {
	sum := 0
	for i := len(d) - 1; i >= 0; i-- {
		v := int(d[i] - '0')
		if (len(d)-1-i)%2 == 1 {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// ibanStart triggers on two capital letters and two digits in a row.
func ibanStart(text string, from int) int {
	for i := from; i+3 < len(text); i++ {
		if isUpper(text[i]) && isUpper(text[i+1]) && isDigit(text[i+2]) && isDigit(text[i+3]) {
			return i
		}
	}
	return -1
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// ibanLengths are the lengths of the IBANs of common countries.
var ibanLengths = map[string]int{
	"AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "EE": 20, "ES": 24,
	"FI": 18, "FR": 27, "GB": 22, "GR": 27, "HR": 21, "HU": 28, "IE": 22, "IS": 26, "IT": 27, "LI": 21,
	"LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31, "NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24,
	"SE": 24, "SI": 19, "SK": 24, "SM": 27, "TR": 26, "AE": 23, "SA": 24, "IL": 23, "BR": 29, "QA": 29,
}

// isIBAN checks the country's length and the mod-97 check digits.
func isIBAN(s string) bool {
	compact := strings.ReplaceAll(s, " ", "")
	if n, ok := ibanLengths[compact[:2]]; !ok || n != len(compact) {
		return false
	}
	var digits strings.Builder
	for _, c := range compact[4:] + compact[:4] {
		switch {
		case c >= '0' && c <= '9':
			digits.WriteRune(c)
		case c >= 'A' && c <= 'Z':
			digits.WriteString(itoa(int(c-'A') + 10))
		default:
			return false
		}
	}
	n, ok := new(big.Int).SetString(digits.String(), 10)
	return ok && new(big.Int).Mod(n, big.NewInt(97)).Int64() == 1
}

func itoa(v int) string { return string(rune('0'+v/10)) + string(rune('0'+v%10)) }

// isPhone accepts 8 to 15 digits, as E.164 numbers have.
func isPhone(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if isDigit(s[i]) {
			n++
		}
	}
	return n >= 8 && n <= 15
}

// findSSNs finds ddd-dd-dddd, standing alone, that isSSN accepts.
func findSSNs(kind Kind, text string, dst []Finding) []Finding {
	for i := 3; i+7 < len(text); i++ {
		if text[i] != '-' || text[i+3] != '-' {
			continue
		}
		start, end := i-3, i+8
		if start > 0 && isWordByte(text[start-1]) || end < len(text) && isWordByte(text[end]) {
			continue
		}
		candidate := text[start:end]
		digits := true
		for j, c := range []byte(candidate) {
			if j != 3 && j != 6 && !isDigit(c) {
				digits = false
				break
			}
		}
		if digits && isSSN(candidate) {
			dst = append(dst, Finding{Kind: kind, Start: start, End: end})
			i = end
		}
	}
	return dst
}

// isSSN excludes numbers never issued: area 000, 666 or 900-999, group
// 00, serial 0000.
func isSSN(s string) bool {
	area, group, serial := s[:3], s[4:6], s[7:]
	return area != "000" && area != "666" && area[0] != '9' && group != "00" && serial != "0000"
}

// maxKeyBlock bounds a PEM private key block: an RSA 8192 key is under 7
// KiB.
const maxKeyBlock = 16 << 10

// findPrivateKeys finds PEM blocks of private keys, BEGIN line to END
// line.
func findPrivateKeys(kind Kind, text string, dst []Finding) []Finding {
	for from := 0; ; {
		i := strings.Index(text[from:], "-----BEGIN ")
		if i < 0 {
			return dst
		}
		start := from + i
		header := text[start+len("-----BEGIN "):]
		label, _, ok := strings.Cut(header, "-----")
		if !ok || len(label) > 48 || !strings.HasSuffix(label, "PRIVATE KEY") && !strings.HasSuffix(label, "PRIVATE KEY BLOCK") {
			from = start + 1
			continue
		}
		footer := "-----END " + label + "-----"
		rest := text[start:min(len(text), start+maxKeyBlock)]
		j := strings.Index(rest, footer)
		if j < 0 {
			from = start + 1
			continue
		}
		end := start + j + len(footer)
		dst = append(dst, Finding{Kind: kind, Start: start, End: end})
		from = end
	}
}
