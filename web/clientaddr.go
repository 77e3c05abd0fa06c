package web

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// resolveClient says who sent r and whether they used https. Only a TCP
// peer inside trusted may say so in headers: Forwarded (RFC 7239) or, when
// it has no element, X-Forwarded-For with X-Forwarded-Proto. Every proxy
// appends the address it was reached from, so the list is read from the
// right: trusted hops are skipped and the first untrusted one is the
// client; whatever lies left of it is what that client sent, and is not
// believed. When every hop is trusted, the leftmost is the client. An entry
// that cannot be read (garbage, "unknown", an obfuscated identifier) ends
// the walk: the last hop read is the client, or else the peer.
//
// A proxy must therefore set or remove Forwarded, and set X-Forwarded-For
// and X-Forwarded-Proto, for a client may send any of them.
//
// addr is "host:port" for net.SplitHostPort, the peer's own r.RemoteAddr
// when no header names the client; a proxy's port may be empty (none
// given), an IPv4-mapped address is the IPv4 one. https is the proto of
// the entry that named the client (or, for the peer, of the one the peer
// added); X-Forwarded-Proto's entries line up with X-Forwarded-For's from
// the right, but a single value speaks for the whole chain.
func resolveClient(r *http.Request, trusted []netip.Prefix) (addr string, https bool) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !isTrusted(peer.Addr(), trusted) {
		return r.RemoteAddr, false
	}
	var hops []hop
	for _, line := range r.Header.Values("Forwarded") {
		hops = appendForwarded(hops, line)
	}
	forwarded := len(hops) > 0
	var protos []string // X-Forwarded-Proto's; a Forwarded hop has its own
	if !forwarded {
		for _, v := range listValues(r.Header.Values("X-Forwarded-For")) {
			a, port, ok := parseNode(v)
			hops = append(hops, hop{addr: a, port: port, ok: ok})
		}
		protos = listValues(r.Header.Values("X-Forwarded-Proto"))
	}

	addr, fromRight := r.RemoteAddr, 0 // fromRight: the client's hop, 0 the rightmost
	for i := len(hops) - 1; i >= 0; i-- {
		h := hops[i]
		if !h.ok {
			break
		}
		addr, fromRight = net.JoinHostPort(h.addr.Unmap().String(), h.port), len(hops)-1-i
		if !isTrusted(h.addr, trusted) {
			break
		}
	}
	proto := ""
	switch {
	case forwarded:
		proto = hops[len(hops)-1-fromRight].proto
	case len(protos) == 1:
		proto = protos[0]
	case fromRight < len(protos):
		proto = protos[len(protos)-1-fromRight]
	}
	return addr, strings.EqualFold(proto, "https")
}

// hop is one proxy's entry: who it was reached from, and how.
type hop struct {
	addr  netip.Addr
	port  string // "" when not given, or obfuscated
	ok    bool   // addr is an address: not garbage, "unknown" or obfuscated
	proto string // Forwarded's proto=, if any
}

// isTrusted: a is inside one of trusted. An IPv4-mapped IPv6 address is
// the IPv4 one, whichever way a prefix is written.
func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) || p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// listValues are the comma-separated entries of header lines (several
// lines are one list), trimmed, empty ones dropped as HTTP lists allow.
func listValues(lines []string) []string {
	var out []string
	for _, line := range lines {
		for v := range strings.SplitSeq(line, ",") {
			if v = strings.Trim(v, " \t"); v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// parseNode reads a node: an IP address with an optional port, IPv6 in
// brackets when it has one ("[2001:db8::1]:4711"). An obfuscated port
// ("_abc", RFC 7239) is read as none; "unknown" and obfuscated addresses
// are not addresses (ok false).
func parseNode(s string) (a netip.Addr, port string, ok bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, "", true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), strconv.Itoa(int(ap.Port())), true
	}
	if inner, isBracketed := strings.CutPrefix(s, "["); isBracketed && strings.HasSuffix(inner, "]") {
		a, err := netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		return a, "", err == nil && a.Is6()
	}
	host, p, err := net.SplitHostPort(s)
	if err != nil || !isObfuscated(p) {
		return netip.Addr{}, "", false
	}
	a, err = netip.ParseAddr(host)
	return a, "", err == nil
}

// isObfuscated: an RFC 7239 obfuscated identifier, "_" then ALPHA, DIGIT,
// ".", "_" or "-".
func isObfuscated(s string) bool {
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// appendForwarded appends the hops of one Forwarded line. A syntax error
// spoils its element and the rest of its line (where the next element
// starts is unknowable past it) but not the other lines: a quoted string
// never spans two.
func appendForwarded(hops []hop, line string) []hop {
	for s := line; ; {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return hops
		}
		if s[0] == ',' { // an empty element
			s = s[1:]
			continue
		}
		params, rest, ok := forwardedElement(s)
		if !ok {
			return append(hops, hop{})
		}
		h := hop{proto: params["proto"]}
		if v, has := params["for"]; has {
			h.addr, h.port, h.ok = parseNode(v)
		}
		hops = append(hops, h)
		s = rest
	}
}

// forwardedElement parses the element s starts with, up to its comma:
// pairs name=value (names case-insensitive, each at most once), the value
// a quoted string or a run of anything but a delimiter (laxer than the
// RFC's token, which would refuse an unquoted "192.0.2.1:80").
func forwardedElement(s string) (params map[string]string, rest string, ok bool) {
	params = make(map[string]string)
	for {
		s = strings.TrimLeft(s, " \t")
		switch {
		case s == "":
			return params, "", true
		case s[0] == ',':
			return params, s[1:], true
		case s[0] == ';':
			s = s[1:]
			continue
		}
		i := strings.IndexFunc(s, func(c rune) bool { return !isTchar(c) })
		if i <= 0 || s[i] != '=' {
			return nil, "", false
		}
		name := strings.ToLower(s[:i])
		s = s[i+1:]
		var v string
		if strings.HasPrefix(s, `"`) {
			if v, s, ok = quotedString(s); !ok {
				return nil, "", false
			}
		} else {
			j := strings.IndexAny(s, " \t;,\"")
			if j < 0 {
				j = len(s)
			}
			v, s = s[:j], s[j:]
		}
		if _, dup := params[name]; dup || v == "" {
			return nil, "", false
		}
		params[name] = v
		if s = strings.TrimLeft(s, " \t"); s != "" && s[0] != ';' && s[0] != ',' {
			return nil, "", false
		}
	}
}

// quotedString reads the quoted string s starts with, undoing its escapes.
func quotedString(s string) (v, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i++; i == len(s) {
				return "", "", false
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// isTchar: a character of an HTTP token (RFC 9110).
func isTchar(c rune) bool {
	return c < 0x80 && (isAlnum(byte(c)) || strings.ContainsRune("!#$%&'*+-.^_`|~", c))
}
