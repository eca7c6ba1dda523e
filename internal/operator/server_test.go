package operator_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"treasuryd/internal/metrics"
	"treasuryd/internal/operator"
)

// memStore is an in-memory PauseStore that can be made to fail.
type memStore struct {
	mu     sync.Mutex
	paused bool
	reason string
	fail   bool
}

func (m *memStore) Paused(context.Context) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.paused, nil
}

func (m *memStore) PauseReason(context.Context) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reason, nil
}

func (m *memStore) SetPause(_ context.Context, p bool, _, reason string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.paused, m.reason = p, reason
	return nil
}

const token = "s3cret-admin-token-7f3a9c21e4"

type resolved struct {
	id     int64
	deskID string
}

func newServer(t *testing.T, adminToken string, store *memStore, ready bool) (http.Handler, *operator.Switch, *[]resolved) {
	t.Helper()
	m := metrics.New("test")
	sw := operator.NewSwitch(store, m)
	if err := sw.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	var calls []resolved
	src := operator.Sources{
		Ready: map[string]func() bool{"balances": func() bool { return ready }},
		ResolveWithdrawal: func(_ context.Context, id int64, deskID, _ string) error {
			calls = append(calls, resolved{id, deskID})
			return nil
		},
	}
	srv := operator.New(operator.Config{AdminToken: adminToken}, zaptest.NewLogger(t), m, sw, src)
	return srv.Handler(), sw, &calls
}

func do(h http.Handler, method, path, auth, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAdminRoutesNeedTheBearerToken(t *testing.T) {
	tests := []struct {
		name, adminToken, auth string
		want                   int
		paused                 bool
	}{
		{"no token configured disables them", "", "Bearer " + token, http.StatusForbidden, false},
		{"missing header", token, "", http.StatusUnauthorized, false},
		{"wrong token", token, "Bearer nope", http.StatusUnauthorized, false},
		{"not a bearer", token, "Basic " + token, http.StatusUnauthorized, false},
		{"right token", token, "Bearer " + token, http.StatusOK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &memStore{}
			h, sw, _ := newServer(t, tt.adminToken, store, true)
			rec := do(h, http.MethodPost, "/pause", tt.auth, "")
			if rec.Code != tt.want {
				t.Fatalf("POST /pause: %d, want %d", rec.Code, tt.want)
			}
			if sw.Paused() != tt.paused || store.paused != tt.paused {
				t.Fatalf("paused in memory %v, persisted %v; want %v", sw.Paused(), store.paused, tt.paused)
			}
			if strings.Contains(rec.Body.String(), token) {
				t.Fatal("the admin token is echoed in the answer")
			}
		})
	}
}

func TestPauseIsPersistedBeforeItTakesEffect(t *testing.T) {
	store := &memStore{fail: true}
	h, sw, _ := newServer(t, token, store, true)
	if rec := do(h, http.MethodPost, "/pause", "Bearer "+token, ""); rec.Code != http.StatusInternalServerError {
		t.Fatalf("POST /pause with a failing journal: %d, want 500", rec.Code)
	}
	if sw.Paused() {
		t.Fatal("paused in memory although the flag was not persisted")
	}
}

func TestSwitchStartsPausedUntilLoaded(t *testing.T) {
	sw := operator.NewSwitch(&memStore{}, metrics.New("test"))
	if !sw.Paused() {
		t.Fatal("a switch that has not read the journal must hold everything")
	}
}

func TestReadyzNamesWhatIsNotReady(t *testing.T) {
	h, _, _ := newServer(t, token, &memStore{}, false)
	rec := do(h, http.MethodGet, "/readyz", "", "")
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "balances") {
		t.Fatalf("/readyz: %d %q", rec.Code, rec.Body.String())
	}
}

func TestResolveWithdrawalValidatesItsRequest(t *testing.T) {
	tests := []struct {
		name, path, auth, body string
		want                   int
		call                   *resolved
	}{
		{"no token", "/withdrawals/7/resolve", "", `{"never_executed":true}`, http.StatusUnauthorized, nil},
		{"bad id", "/withdrawals/x/resolve", "Bearer " + token, `{"never_executed":true}`, http.StatusBadRequest, nil},
		{"empty body", "/withdrawals/7/resolve", "Bearer " + token, `{}`, http.StatusBadRequest, nil},
		{"both answers", "/withdrawals/7/resolve", "Bearer " + token, `{"desk_id":"d","never_executed":true}`, http.StatusBadRequest, nil},
		{"unknown field", "/withdrawals/7/resolve", "Bearer " + token, `{"id":"d"}`, http.StatusBadRequest, nil},
		{"never executed", "/withdrawals/7/resolve", "Bearer " + token, `{"never_executed":true}`, http.StatusOK, &resolved{7, ""}},
		{"found at the desk", "/withdrawals/9/resolve", "Bearer " + token, `{"desk_id":"abc"}`, http.StatusOK, &resolved{9, "abc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _, calls := newServer(t, token, &memStore{}, true)
			rec := do(h, http.MethodPost, tt.path, tt.auth, tt.body)
			if rec.Code != tt.want {
				t.Fatalf("%d %q, want %d", rec.Code, rec.Body.String(), tt.want)
			}
			if tt.call == nil && len(*calls) != 0 || tt.call != nil && (len(*calls) != 1 || (*calls)[0] != *tt.call) {
				t.Fatalf("resolver calls %+v, want %+v", *calls, tt.call)
			}
		})
	}
}

func TestHaltPausesWithItsReasonAndOnlyResumeClearsIt(t *testing.T) {
	store := &memStore{}
	sw := operator.NewSwitch(store, metrics.New("test"))
	if err := sw.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sw.Halt(context.Background(), "withdrawal_mismatch"); err != nil {
		t.Fatal(err)
	}
	if !sw.Paused() || sw.Reason() != "withdrawal_mismatch" || !store.paused || store.reason != "withdrawal_mismatch" {
		t.Fatalf("after Halt: paused %v reason %q; persisted %v %q", sw.Paused(), sw.Reason(), store.paused, store.reason)
	}
	// An operator's pause on top keeps the reason; a resume clears both.
	if err := sw.Set(context.Background(), true, "http x"); err != nil || sw.Reason() != "withdrawal_mismatch" {
		t.Fatalf("pause on top: %v, reason %q", err, sw.Reason())
	}
	if err := sw.Set(context.Background(), false, "http x"); err != nil || sw.Paused() || sw.Reason() != "" || store.reason != "" {
		t.Fatalf("resume: %v, paused %v, reason %q, persisted reason %q", err, sw.Paused(), sw.Reason(), store.reason)
	}
}

func TestHaltFailsClosedWhenTheJournalCannotPersistIt(t *testing.T) {
	store := &memStore{}
	sw := operator.NewSwitch(store, metrics.New("test"))
	if err := sw.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	store.fail = true
	if err := sw.Halt(context.Background(), "withdrawal_mismatch"); err == nil {
		t.Fatal("Halt reported success although the journal refused the write")
	}
	if !sw.Paused() {
		t.Fatal("not paused in memory after a failed persist: a self-pause must fail closed")
	}
}

func TestPauseCarriesTheOperatorsNote(t *testing.T) {
	tests := []struct {
		name, body string
		want       int
		reason     string
	}{
		{"no body", "", http.StatusOK, operator.ReasonOperator},
		{"a note", `{"reason": "desk maintenance"}`, http.StatusOK, "operator: desk maintenance"},
		{"other fields are ignored", `{"why": "x"}`, http.StatusOK, operator.ReasonOperator},
		{"not JSON", `reason=x`, http.StatusBadRequest, ""},
		{"too long", `{"reason": "` + strings.Repeat("x", 201) + `"}`, http.StatusBadRequest, ""},
		{"two lines", `{"reason": "a\nb"}`, http.StatusBadRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := &memStore{}
			h, sw, _ := newServer(t, token, store, true)
			rec := do(h, http.MethodPost, "/pause", "Bearer "+token, tt.body)
			if rec.Code != tt.want {
				t.Fatalf("POST /pause %s: %d, want %d (%s)", tt.body, rec.Code, tt.want, rec.Body)
			}
			if sw.Reason() != tt.reason || store.reason != tt.reason {
				t.Fatalf("reason in memory %q, persisted %q; want %q", sw.Reason(), store.reason, tt.reason)
			}
			if tt.want != http.StatusOK && sw.Paused() {
				t.Fatal("a refused request paused")
			}
		})
	}
}
