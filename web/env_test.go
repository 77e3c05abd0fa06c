package web

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chimirror/chimirror/supervisor"
)

// envMap splits NAME=value pairs, failing on a malformed one.
func envMap(t *testing.T, env []string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	for _, e := range env {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" {
			t.Errorf("malformed variable %q", e)
			continue
		}
		m[k] = append(m[k], v)
	}
	return m
}

// TestCGIEnv: the withheld credential headers reach a job only when its app
// passes them, HTTP_PROXY never does, other headers pass as HTTP_*, and a
// ?token= is cut from the query and the URI.
func TestCGIEnv(t *testing.T) {
	t.Parallel()
	all := []string{"Cookie", "Authorization", "Proxy-Authorization"}
	tests := []struct {
		name   string
		target string
		header http.Header // set as is: keys need not be canonical
		pass   []string
		want   map[string]string // variables and their values
		absent []string          // variables that must not be set
	}{
		{
			name:   "ordinary headers pass",
			target: "/apps/x?a=1",
			header: http.Header{"X-Custom": {"v"}, "User-Agent": {"ua/1"}, "Accept-Language": {"en", "fr"}, "X-Under_Score": {"u"}},
			want: map[string]string{"HTTP_X_CUSTOM": "v", "HTTP_USER_AGENT": "ua/1", "HTTP_ACCEPT_LANGUAGE": "en, fr",
				"HTTP_X_UNDER_SCORE": "u", "QUERY_STRING": "a=1", "REQUEST_URI": "/apps/x?a=1", "SCRIPT_NAME": "/apps/x",
				"REQUEST_METHOD": "GET", "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_SOFTWARE": "chimirror/test",
				"HTTP_HOST": "example.com", "SERVER_NAME": "example.com", "HTTPS": "off", "PATH_INFO": ""},
		},
		{
			name:   "credentials withheld by default",
			target: "/apps/x",
			header: http.Header{"Cookie": {"c=1"}, "Authorization": {"Bearer t"}, "Proxy-Authorization": {"Basic p"}, "X-Ok": {"1"}},
			want:   map[string]string{"HTTP_X_OK": "1"},
			absent: []string{"HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION"},
		},
		{
			name:   "cookie passed alone",
			target: "/apps/x",
			header: http.Header{"Cookie": {"c=1"}, "Authorization": {"Bearer t"}, "Proxy-Authorization": {"Basic p"}},
			pass:   []string{"Cookie"},
			want:   map[string]string{"HTTP_COOKIE": "c=1"},
			absent: []string{"HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION"},
		},
		{
			name:   "the console's admin cookie never passes",
			target: "/apps/x",
			header: http.Header{"Cookie": {"theme=dark; " + adminCookie + "=admintoken; lang=fr", adminCookie + "=again"}},
			pass:   []string{"Cookie"},
			want:   map[string]string{"HTTP_COOKIE": "theme=dark; lang=fr"},
		},
		{
			name:   "a Cookie header of the admin cookie alone is dropped",
			target: "/apps/x",
			header: http.Header{"Cookie": {adminCookie + "=admintoken"}},
			pass:   []string{"Cookie"},
			absent: []string{"HTTP_COOKIE"},
		},
		{
			name:   "authorization passed alone",
			target: "/apps/x",
			header: http.Header{"Cookie": {"c=1"}, "Authorization": {"Bearer t"}, "Proxy-Authorization": {"Basic p"}},
			pass:   []string{"Authorization"},
			want:   map[string]string{"HTTP_AUTHORIZATION": "Bearer t"},
			absent: []string{"HTTP_COOKIE", "HTTP_PROXY_AUTHORIZATION"},
		},
		{
			name:   "all three passed",
			target: "/apps/x",
			header: http.Header{"Cookie": {"c=1"}, "Authorization": {"Bearer t"}, "Proxy-Authorization": {"Basic p"}},
			pass:   all,
			want:   map[string]string{"HTTP_COOKIE": "c=1", "HTTP_AUTHORIZATION": "Bearer t", "HTTP_PROXY_AUTHORIZATION": "Basic p"},
		},
		{
			name:   "non-canonical header keys are withheld too",
			target: "/apps/x",
			header: http.Header{"cookie": {"c=1"}, "AUTHORIZATION": {"Bearer t"}, "proxy-authorization": {"Basic p"}},
			absent: []string{"HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION"},
		},
		{
			name:   "Proxy never, even when passed",
			target: "/apps/x",
			header: http.Header{"Proxy": {"http://evil:8080"}},
			pass:   append(slices.Clone(all), "Proxy"),
			absent: []string{"HTTP_PROXY"},
		},
		{
			name:   "proxy in any case never",
			target: "/apps/x",
			header: http.Header{"proxy": {"http://evil:8080"}, "PROXY": {"http://evil:8081"}},
			pass:   []string{"Proxy", "proxy", ""},
			absent: []string{"HTTP_PROXY"},
		},
		{
			name:   "Proxy_Authorization renders like Proxy-Authorization",
			target: "/apps/x",
			header: http.Header{"Proxy_Authorization": {"Basic sneaky"}},
			absent: []string{"HTTP_PROXY_AUTHORIZATION"},
		},
		{
			name:   "Proxy_Authorization withheld when only Authorization passes",
			target: "/apps/x",
			header: http.Header{"Proxy_Authorization": {"Basic sneaky"}},
			pass:   []string{"Cookie", "Authorization"},
			absent: []string{"HTTP_PROXY_AUTHORIZATION"},
		},
		{
			name:   "Proxy_Authorization passes with Proxy-Authorization",
			target: "/apps/x",
			header: http.Header{"Proxy_Authorization": {"Basic p"}},
			pass:   []string{"Proxy-Authorization"},
			want:   map[string]string{"HTTP_PROXY_AUTHORIZATION": "Basic p"},
		},
		{
			name:   "lookalikes of withheld headers are other variables",
			target: "/apps/x",
			header: http.Header{"Cookie2": {"a"}, "X-Authorization": {"b"}, "Proxy-Connection": {"c"}},
			want:   map[string]string{"HTTP_COOKIE2": "a", "HTTP_X_AUTHORIZATION": "b", "HTTP_PROXY_CONNECTION": "c"},
			absent: []string{"HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_PROXY"},
		},
		{
			name:   "token cut from the query",
			target: "/apps/x?a=1&token=secret&b=2",
			want:   map[string]string{"QUERY_STRING": "a=1&b=2", "REQUEST_URI": "/apps/x?a=1&b=2", "SCRIPT_NAME": "/apps/x"},
		},
		{
			name:   "the token alone",
			target: "/apps/x?token=secret",
			want:   map[string]string{"QUERY_STRING": "", "REQUEST_URI": "/apps/x"},
		},
		{
			name:   "every token",
			target: "/apps/x?token=one&z=9&token=two",
			want:   map[string]string{"QUERY_STRING": "z=9", "REQUEST_URI": "/apps/x?z=9"},
		},
		{
			name:   "an escaped token key",
			target: "/apps/x?tok%65n=secret&q=1",
			want:   map[string]string{"QUERY_STRING": "q=1", "REQUEST_URI": "/apps/x?q=1"},
		},
		{
			name:   "an escaped path kept escaped",
			target: "/apps/x%2Fy?token=secret",
			want:   map[string]string{"QUERY_STRING": "", "REQUEST_URI": "/apps/x%2Fy"},
		},
		{
			name:   "no token: query and URI as sent",
			target: "/apps/x?b=2&a=1&tokens=kept",
			want:   map[string]string{"QUERY_STRING": "b=2&a=1&tokens=kept", "REQUEST_URI": "/apps/x?b=2&a=1&tokens=kept"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "http://example.com"+tc.target, nil)
			r.RequestURI = tc.target // as a server sees it
			for k, vs := range tc.header {
				r.Header[k] = vs
			}
			env := cgiEnv(r, "chimirror/test", tc.pass, "/apps/x", "")
			m := envMap(t, env)
			for k, want := range tc.want {
				if got, ok := m[k]; !ok || len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want exactly %q", k, got, want)
				}
			}
			for _, k := range tc.absent {
				if v, ok := m[k]; ok {
					t.Errorf("%s = %q is set, want it withheld", k, v)
				}
			}
			for k, vs := range m {
				if len(vs) > 1 {
					t.Errorf("%s set %d times: %q", k, len(vs), vs)
				}
			}
			for _, e := range env {
				if strings.Contains(e, "secret") || strings.Contains(e, "token=") {
					t.Errorf("%q leaks the ?token=", e)
				}
			}
		})
	}
}

// TestTenantTokenNotPassed: an app that passes Authorization gets the
// header from anonymous clients, but never a tenant's bearer token: with
// tenants, the Authorization header is chimirror's, not the job's.
func TestTenantTokenNotPassed(t *testing.T) {
	const script = `printf '[%s][%s]\n' "$HTTP_AUTHORIZATION" "$HTTP_COOKIE"`
	passing := shApp("auth", script)
	passing.PassHeaders = []string{"Authorization", "Cookie"}
	plain := shApp("plain", script)
	hdr := func(auth string) http.Header {
		return http.Header{"Authorization": {auth}, "Cookie": {"c=1"}}
	}
	run := func(t *testing.T, s *testServer, path string, h http.Header) string {
		t.Helper()
		ws, err := s.tryDial(path, h, ProtoV1)
		if err != nil {
			t.Fatalf("dial %s: %v", path, err)
		}
		defer ws.Close()
		got := readSession(t, ws, 10*time.Second)
		if got.exit == nil || got.exit.Code != 0 {
			t.Fatalf("job exit %+v, stderr %q", got.exit, got.stderr)
		}
		return strings.TrimSpace(string(got.stdout))
	}
	tests := []struct {
		name    string
		tenants []supervisor.Tenant
		path    string
		hdr     http.Header
		want    string
	}{
		{name: "no tenants: the header passes", path: "/apps/auth", hdr: hdr("Bearer anything"), want: "[Bearer anything][c=1]"},
		{name: "no tenants: basic credentials pass", path: "/apps/auth", hdr: hdr("Basic dTpw"), want: "[Basic dTpw][c=1]"},
		{name: "no tenants: an app not passing them", path: "/apps/plain", hdr: hdr("Bearer anything"), want: "[][]"},
		{name: "tenant's bearer token withheld", tenants: []supervisor.Tenant{tenant("alice", "alice-secret-0123456789abcdef0123456789", 0)},
			path: "/apps/auth", hdr: hdr("Bearer alice-secret-0123456789abcdef0123456789"), want: "[][c=1]"},
		{name: "query token: the header still withheld", tenants: []supervisor.Tenant{tenant("alice", "alice-secret-0123456789abcdef0123456789", 0)},
			path: "/apps/auth?token=alice-secret-0123456789abcdef0123456789", hdr: hdr("Basic dTpw"), want: "[][c=1]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, supervisor.Config{Apps: []supervisor.App{passing, plain}, Tenants: tc.tenants}, Options{})
			if got := run(t, s, tc.path, tc.hdr); got != tc.want {
				t.Errorf("job sees %s, want %s", got, tc.want)
			}
		})
	}
	// The app's own list is left as configured.
	if !slices.Equal(passing.PassHeaders, []string{"Authorization", "Cookie"}) {
		t.Errorf("PassHeaders changed to %q", passing.PassHeaders)
	}
}

// TestPathInfo: the path after an app's own is PATH_INFO, decoded, and the
// app's path is SCRIPT_NAME, as CGI has it; in quick mode every path runs
// the command, websocketd's way (SCRIPT_NAME "/", PATH_INFO the path); with
// AppsAtRoot, /NAME is app NAME, as websocketd's --dir serves it. Routing
// reads the escaped path: an escaped '/' never ends an app's name.
func TestPathInfo(t *testing.T) {
	t.Parallel()
	apps := supervisor.Config{Apps: []supervisor.App{
		shApp("where", `printf '[%s][%s][%s]\n' "$SCRIPT_NAME" "$PATH_INFO" "$REQUEST_URI"`),
		shApp("other", `printf 'other\n'`),
	}}
	plain := startServer(t, apps, Options{})
	quick := startServer(t, apps, Options{QuickApp: "where"})
	atRoot := startServer(t, apps, Options{AppsAtRoot: true})
	based := startServer(t, apps, Options{QuickApp: "where", Edge: Edge{BasePath: "/base"}})
	tests := []struct {
		name   string
		s      *testServer
		path   string
		want   string // the job's output; "" when refused
		status int    // the refusal's status
	}{
		{name: "the app's own path", s: plain, path: "/apps/where", want: "[/apps/where][][/apps/where]"},
		{name: "a path after it", s: plain, path: "/apps/where/extra/x", want: "[/apps/where][/extra/x][/apps/where/extra/x]"},
		{name: "a trailing slash", s: plain, path: "/apps/where/", want: "[/apps/where][/][/apps/where/]"},
		{name: "decoded", s: plain, path: "/apps/where/a%2Fb/c%20d?q=1", want: "[/apps/where][/a/b/c d][/apps/where/a%2Fb/c%20d?q=1]"},
		{name: "an escaped slash is no separator", s: plain, path: "/apps/where%2Fextra", status: http.StatusNotFound},
		{name: "an unknown app with a path", s: plain, path: "/apps/nope/x", status: http.StatusNotFound},
		{name: "off /apps/ without quick mode", s: plain, path: "/where/x", status: http.StatusNotFound},
		{name: "dot segments", s: plain, path: "/apps/where/../other", status: http.StatusNotFound},
		{name: "escaped dot segments", s: plain, path: "/apps/where/a/%2e%2e/x", status: http.StatusNotFound},
		{name: "a dot segment behind an escaped slash", s: plain, path: "/apps/where/a%2f.", status: http.StatusNotFound},
		{name: "a NUL", s: plain, path: "/apps/where/a%00", status: http.StatusNotFound},
		{name: "dots within a segment pass", s: plain, path: "/apps/where/..a/b..", want: "[/apps/where][/..a/b..][/apps/where/..a/b..]"},
		{name: "quick: /", s: quick, path: "/", want: "[/][/][/]"},
		{name: "quick: any path", s: quick, path: "/path/x", want: "[/][/path/x][/path/x]"},
		{name: "quick: decoded", s: quick, path: "/a%20b?x=1", want: "[/][/a b][/a%20b?x=1]"},
		{name: "quick: another app's name", s: quick, path: "/apps/nope/x", want: "[/][/apps/nope/x][/apps/nope/x]"},
		{name: "quick: its own app path", s: quick, path: "/apps/where/x", want: "[/apps/where][/x][/apps/where/x]"},
		{name: "quick: a configured app", s: quick, path: "/apps/other", want: "other"},
		{name: "quick: dot segments", s: quick, path: "/a/../b", status: http.StatusNotFound},
		{name: "quick: escaped dot segments", s: quick, path: "/a%2f%2e%2e%2fb", status: http.StatusNotFound},
		{name: "quick: dot segments after its app path", s: quick, path: "/apps/where/..", status: http.StatusNotFound},
		{name: "at root: /NAME", s: atRoot, path: "/where", want: "[/where][][/where]"},
		{name: "at root: /NAME/path", s: atRoot, path: "/where/a/b", want: "[/where][/a/b][/where/a/b]"},
		{name: "at root: /apps/NAME too", s: atRoot, path: "/apps/where/a", want: "[/apps/where][/a][/apps/where/a]"},
		{name: "at root: an unknown name", s: atRoot, path: "/nope/a", status: http.StatusNotFound},
		{name: "at root: an escaped slash", s: atRoot, path: "/where%2Fa", status: http.StatusNotFound},
		{name: "at root: / is no app", s: atRoot, path: "/", status: http.StatusNotFound},
		{name: "at root: dot segments", s: atRoot, path: "/where/../other", status: http.StatusNotFound},
		{name: "base path: an app", s: based, path: "/base/apps/where/x", want: "[/base/apps/where][/x][/base/apps/where/x]"},
		{name: "base path: quick", s: based, path: "/base/p/q", want: "[/base/][/p/q][/base/p/q]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ws, err := tc.s.tryDial(tc.path, nil, ProtoV1)
			if tc.want == "" {
				var de *dialError
				if !errors.As(err, &de) || de.status != tc.status {
					t.Fatalf("dial %s: %v, want refused %d", tc.path, err, tc.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial %s: %v", tc.path, err)
			}
			defer ws.Close()
			got := readSession(t, ws, 10*time.Second)
			if out := strings.TrimSpace(string(got.stdout)); out != tc.want {
				t.Errorf("job sees %s, want %s (stderr %q)", out, tc.want, got.stderr)
			}
		})
	}
}
