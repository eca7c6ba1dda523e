package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

const (
	// defaultAddr is http.listen of a daemon on this machine; -addr or
	// TREASURYD_ADDR point elsewhere (e.g. http.admin_listen, or a
	// `kubectl port-forward`).
	defaultAddr = "http://127.0.0.1:8080"
	// clientTimeout bounds one request: the daemon answers these routes
	// from memory and one journal write.
	clientTimeout = 15 * time.Second
	// maxStatusBody bounds what the client reads of an answer.
	maxStatusBody = 8 << 20
	tokenEnv      = "TREASURYD_ADMIN_TOKEN"
)

// cmdClient runs `treasuryd status|pause|resume`: the HTTP routes of a
// running daemon from a shell. The admin token is read from the environment
// and sent only in the Authorization header; it is never printed.
func cmdClient(cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("treasuryd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrDefault := defaultAddr
	if a := os.Getenv("TREASURYD_ADDR"); a != "" {
		addrDefault = a
	}
	addr := fs.String("addr", addrDefault, "the daemon's base URL (env TREASURYD_ADDR); for pause/resume the admin listener if http.admin_listen is set")
	var reason *string
	asJSON := fs.Bool("json", false, "print the daemon's raw JSON answer")
	if cmd != "status" {
		reason = fs.String("reason", "", "why, recorded with the change")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "treasuryd %s: unexpected arguments %q\n", cmd, fs.Args())
		return exitUsage
	}
	base, err := baseURL(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd %s: -addr: %v\n", cmd, err)
		return exitUsage
	}
	client := &http.Client{Timeout: clientTimeout}
	if cmd == "status" {
		return clientStatus(client, base, *asJSON, stdout, stderr)
	}
	token := os.Getenv(tokenEnv)
	if token == "" {
		fmt.Fprintf(stderr, "treasuryd %s: %s is not set; export the daemon's admin token\n", cmd, tokenEnv)
		return exitUsage
	}
	return clientAdmin(client, base, cmd, token, *reason, *asJSON, stdout, stderr)
}

// baseURL accepts "host:port" or an http(s) URL, without a trailing slash.
func baseURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not an http(s) address", s)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q: give scheme, host, port and path only", s)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func clientAdmin(client *http.Client, base, cmd, token, reason string, asJSON bool, stdout, stderr io.Writer) int {
	body, _ := json.Marshal(map[string]string{"reason": reason})
	req, err := http.NewRequest(http.MethodPost, base+"/"+cmd, bytes.NewReader(body))
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd %s: %v\n", cmd, err)
		return exitUsage
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd %s: %v\n", cmd, redact(err.Error(), token))
		return exitRuntime
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	text := redact(strings.TrimSpace(string(msg)), token)
	switch {
	case resp.StatusCode == http.StatusOK:
		var ans struct {
			Paused bool `json:"paused"`
		}
		if err := json.Unmarshal(msg, &ans); err != nil {
			fmt.Fprintf(stderr, "treasuryd %s: unexpected answer: %s\n", cmd, text)
			return exitRuntime
		}
		if asJSON {
			fmt.Fprintln(stdout, text)
			return exitOK
		}
		if ans.Paused {
			fmt.Fprintln(stdout, "paused: no accept and no withdrawal until resumed")
		} else {
			fmt.Fprintln(stdout, "resumed: accepts and withdrawals may run again")
		}
		return exitOK
	case resp.StatusCode == http.StatusUnauthorized:
		fmt.Fprintf(stderr, "treasuryd %s: refused (401): %s does not match the daemon's admin token\n", cmd, tokenEnv)
	case resp.StatusCode == http.StatusForbidden:
		fmt.Fprintf(stderr, "treasuryd %s: refused (403): %s\n", cmd, text)
	case resp.StatusCode == http.StatusNotFound:
		fmt.Fprintf(stderr, "treasuryd %s: %s has no /%s (404); with http.admin_listen set, point -addr at the admin listener\n", cmd, base, cmd)
	default:
		fmt.Fprintf(stderr, "treasuryd %s: HTTP %d: %s\n", cmd, resp.StatusCode, text)
	}
	return exitRuntime
}

// redact removes the token from text that may echo a request.
func redact(s, token string) string {
	if token == "" {
		return s
	}
	return strings.ReplaceAll(s, token, "[token]")
}

func clientStatus(client *http.Client, base string, asJSON bool, stdout, stderr io.Writer) int {
	resp, err := client.Get(base + "/status")
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd status: %v\n", err)
		return exitRuntime
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBody))
	if err != nil {
		fmt.Fprintf(stderr, "treasuryd status: %v\n", err)
		return exitRuntime
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "treasuryd status: HTTP %d: %s\n", resp.StatusCode, strings.TrimSpace(string(raw)))
		return exitRuntime
	}
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // amounts stay as the daemon wrote them
	if err := dec.Decode(&doc); err != nil {
		fmt.Fprintf(stderr, "treasuryd status: the answer is not a JSON object: %v\n", err)
		return exitRuntime
	}
	if asJSON {
		stdout.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			fmt.Fprintln(stdout)
		}
		return exitOK
	}
	writeSummary(stdout, base, doc)
	return exitOK
}

// writeSummary prints /status for people. Every value is printed as the
// daemon sent it: no amount is re-computed or rounded here.
func writeSummary(w io.Writer, base string, doc map[string]any) {
	fmt.Fprintf(w, "treasuryd at %s, %s\n", base, str(doc["time"]))
	if role := str(doc["role"]); role != "" {
		fmt.Fprintf(w, "role:            %s\n", role)
	}
	paused, reason := pauseOf(doc)
	if paused {
		line := "PAUSED: no accept and no withdrawal"
		if reason != "" {
			line += " (" + reason + ")"
		}
		fmt.Fprintf(w, "kill switch:     %s\n", line)
	} else {
		fmt.Fprintf(w, "kill switch:     off\n")
	}

	if g, ok := doc["compliance"].(map[string]any); ok {
		state := "CLOSED"
		if b, _ := g["open"].(bool); b {
			state = "open"
		}
		line := fmt.Sprintf("%s (%s)", state, str(g["reason"]))
		if uid := str(g["proof_uid"]); uid != "" {
			line += ", proof " + uid
			if age, ok := seconds(g["proof_age_seconds"]); ok {
				line += ", age " + age.Round(time.Second).String()
				if max, ok := seconds(g["max_proof_age_seconds"]); ok && max > 0 {
					line += " of " + max.String()
				}
			}
		}
		if e := str(g["last_error"]); e != "" {
			line += "; last error: " + e
		}
		fmt.Fprintf(w, "compliance gate: %s\n", line)
	}

	if ps, ok := doc["programs"].([]any); ok {
		fmt.Fprintf(w, "\nprograms:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  NAME\tSTREAM\tLAST PRICE\tLIMIT\tLAST OUTCOME\tEXECUTED\tTARGET\t24H NOTIONAL\tCAP\tAVG PRICE\t")
		for _, p := range ps {
			m, _ := p.(map[string]any)
			stream := "DOWN"
			if b, _ := m["stream_up"].(bool); b {
				stream = "up"
			}
			outcome := str(m["last_outcome"])
			if b, _ := m["in_flight"].(bool); b {
				outcome += " (accept in flight)"
			}
			if b, _ := m["dry_run"].(bool); b {
				outcome += " [dry run]"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", str(m["name"]), stream,
				dash(m["last_quote_price"]), dash(m["limit_price"]), dash(outcome), dash(m["executed"]),
				dash(m["target"]), dash(m["daily_notional"]), dash(m["max_daily_notional"]), dash(m["average_price"]))
		}
		tw.Flush()
	}

	if wd, ok := doc["withdrawals"].(map[string]any); ok {
		inFlight, _ := wd["in_flight"].([]any)
		unresolved, _ := wd["unresolved"].([]any)
		fmt.Fprintf(w, "\nwithdrawals: %d in flight, %d unresolved\n", len(inFlight), len(unresolved))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, group := range []struct {
			name string
			list []any
		}{{"in flight", inFlight}, {"UNRESOLVED", unresolved}} {
			for _, x := range group.list {
				m, _ := x.(map[string]any)
				fmt.Fprintf(tw, "  %s\t#%s\t%s\t%s %s\tto %s on %s\t%s\t%s\t\n", group.name, str(m["id"]), str(m["rule"]),
					str(m["amount"]), str(m["asset"]), str(m["address"]), str(m["network"]), str(m["state"]), str(m["desk_status"]))
			}
		}
		tw.Flush()
		if len(unresolved) > 0 {
			fmt.Fprintln(w, "  an unresolved withdrawal may exist at the desk: see docs/runbook.md#treasurydwithdrawalsunresolved")
		}
	}

	if rec, ok := doc["reconciliation"].(map[string]any); ok {
		state := "clean"
		if b, _ := rec["clean"].(bool); !b {
			state = "BREAKS"
		}
		line := fmt.Sprintf("%s at %s, %s transactions", state, str(rec["at"]), str(rec["transactions"]))
		if e := str(rec["error"]); e != "" {
			line += "; last run failed: " + e
		}
		fmt.Fprintf(w, "\nreconciliation: %s\n", line)
		if br, ok := rec["breaks"].(map[string]any); ok && len(br) > 0 {
			kinds := make([]string, 0, len(br))
			for k := range br {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
			for _, k := range kinds {
				fmt.Fprintf(w, "  %s: %s\n", k, str(br[k]))
			}
		}
	} else {
		fmt.Fprintf(w, "\nreconciliation: none yet\n")
	}

	if auth, ok := doc["authority"].(map[string]any); ok {
		pending, _ := auth["pending"].([]any)
		fmt.Fprintf(w, "\npending authority changes: %d\n", len(pending))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, x := range pending {
			m, _ := x.(map[string]any)
			fmt.Fprintf(tw, "  %s\t%s\t%s\teffective at %s\t\n", str(m["kind"]), str(m["item"]), str(m["diff"]), str(m["effective_at"]))
		}
		tw.Flush()
	}
	if a, ok := doc["audit"].(map[string]any); ok {
		if h, ok := a["head"].(map[string]any); ok {
			fmt.Fprintf(w, "\naudit chain head: #%s %s\n", str(h["sequence"]), str(h["hash"]))
		}
	}
}

// pauseOf reads the pause state in the shapes /status may carry it: a bool
// "paused" with an optional "pause_reason", or a "pause" object.
func pauseOf(doc map[string]any) (bool, string) {
	paused, _ := doc["paused"].(bool)
	reason := str(doc["pause_reason"])
	if p, ok := doc["pause"].(map[string]any); ok {
		if b, ok := p["paused"].(bool); ok {
			paused = b
		}
		if r := str(p["reason"]); r != "" {
			reason = r
		}
	}
	if p, ok := doc["paused"].(map[string]any); ok {
		paused, _ = p["paused"].(bool)
		reason = str(p["reason"])
	}
	return paused, reason
}

// str renders a decoded JSON value as its text (numbers as the daemon wrote
// them, thanks to UseNumber).
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "yes"
		}
		return "no"
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

func dash(v any) string {
	if s := str(v); s != "" {
		return s
	}
	return "-"
}

func seconds(v any) (time.Duration, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	f, err := n.Float64()
	if err != nil {
		return 0, false
	}
	return time.Duration(f * float64(time.Second)), true
}
