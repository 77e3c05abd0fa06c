// Package adminapi is a client of chimirror's admin API (/api/v1), for the
// CLI's jobs, job, cancel and acct, and for the benchmark.
package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Client calls one server's admin API.
type Client struct {
	Base  string // "http://HOST:PORT/api/v1"; see BaseURL
	Token string // sent as a bearer token; "" sends none
	// HTTP makes the calls; for an admin listener with TLS, its transport
	// trusts the server's certificate and presents any client one.
	HTTP *http.Client
}

// BaseURL is Base for the admin listener at addr (HOST:PORT), serving
// under basePath ("" or "/prefix", as base_path), with TLS or without.
func BaseURL(addr, basePath string, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + addr + strings.TrimRight(basePath, "/") + "/api/v1"
}

// Ping asks healthz, within timeout, whether a server answers at all:
// any answer is nil, whatever its status.
func (c *Client) Ping(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// StatusError is an answer other than 2xx: its status and the server's
// message (its JSON "error", else the body).
type StatusError struct {
	Status int
	Msg    string
}

func (e *StatusError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// maxAnswerBytes bounds an answer read.
const maxAnswerBytes = 64 << 20

// Do calls method path and reads the answer whole: a 2xx one is decoded
// into out (nil: dropped), any other is a *StatusError.
func (c *Client) Do(method, path string, out any) (retErr error) {
	resp, err := c.send(method, path, c.HTTP)
	if err != nil {
		return err
	}
	defer func() { retErr = errors.Join(retErr, resp.Body.Close()) }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(body, out)
}

// Open calls GET path for an answer read as it comes, with no overall
// timeout (a followed job's output lasts as long as the job): a 2xx
// answer's body, which the caller closes; any other is a *StatusError.
func (c *Client) Open(path string) (io.ReadCloser, error) {
	hc := *c.HTTP
	hc.Timeout = 0
	resp, err := c.send(http.MethodGet, path, &hc)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// send calls method path through hc; an answer other than 2xx is read
// (its first 64 KiB) and closed, and returned as a *StatusError.
func (c *Client) send(method, path string, hc *http.Client) (*http.Response, error) {
	req, err := http.NewRequest(method, c.Base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err := errors.Join(rerr, resp.Body.Close()); err != nil {
		return nil, fmt.Errorf("%s %s: HTTP %d: %w", method, path, resp.StatusCode, err)
	}
	var e struct{ Error string }
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(body))
	}
	return nil, &StatusError{Status: resp.StatusCode, Msg: e.Error}
}
