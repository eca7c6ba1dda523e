package compliance

import (
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"treasuryd/internal/astral"
	"treasuryd/internal/config"
	"treasuryd/internal/eas"
)

// TestJudgeComparesEveryFieldWithTheIndex drives the comparison with
// attestations the simulator's test API cannot produce (expiry, another
// event time, undecodable data).
func TestJudgeComparesEveryFieldWithTheIndex(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	const (
		subject = "0xabcdef1234567890abcdef1234567890abcdef12"
		prover  = "0x1111111111111111111111111111111111111111"
		schema  = "0xba4171c92572b1e4f241d044c32cdf083be9fd946b8766977558ca6378c824e2"
		uidText = "0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef"
	)
	cfg := config.Compliance{Enabled: true, Subject: subject, TrustedProvers: []string{prover}, MaxProofAge: 24 * time.Hour,
		Allow: []config.Region{{Name: "eu", BBox: []float64{-10, 35, 30, 60}}}}
	pol := compile(cfg)
	v := &verifier{schema: common.HexToHash(schema)}
	event := now.Add(-time.Hour)
	index := astral.Proof{UID: uidText, Chain: "base", Prover: prover, Subject: subject,
		EventTimestamp: event.Add(300 * time.Millisecond), Lng: 2.35, Lat: 48.85, HasPoint: true}
	uid, _ := eas.ParseUID(uidText)
	data := func(ts int64, location string) []byte {
		b, err := eas.EncodeLocation(eas.Location{EventTimestamp: big.NewInt(ts), SRS: "WGS84", LocationType: "point", Location: location})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := eas.Attestation{Uid: uid, Schema: common.HexToHash(schema), Time: uint64(event.Unix()),
		Recipient: common.HexToAddress(subject), Attester: common.HexToAddress(prover), Revocable: true,
		Data: data(event.Unix(), `{"type":"Point","coordinates":[2.35,48.85]}`)}
	tests := []struct {
		name   string
		mod    func(a *eas.Attestation)
		reason string
	}{
		{"confirmed (index time has a fraction the chain has not)", nil, ReasonPass},
		{"empty", func(a *eas.Attestation) { *a = eas.Attestation{} }, ReasonOnchainMismatch},
		{"another uid", func(a *eas.Attestation) { a.Uid[0] ^= 1 }, ReasonOnchainMismatch},
		{"another schema", func(a *eas.Attestation) { a.Schema[31] ^= 1 }, ReasonOnchainMismatch},
		{"another recipient", func(a *eas.Attestation) { a.Recipient[0] ^= 1 }, ReasonOnchainMismatch},
		{"another attester", func(a *eas.Attestation) { a.Attester[0] ^= 1 }, ReasonOnchainMismatch},
		{"revoked", func(a *eas.Attestation) { a.RevocationTime = uint64(now.Unix()) }, ReasonOnchainMismatch},
		{"expired", func(a *eas.Attestation) { a.ExpirationTime = uint64(now.Unix() - 1) }, ReasonExpired},
		{"expires later", func(a *eas.Attestation) { a.ExpirationTime = uint64(now.Unix() + 60) }, ReasonPass},
		{"data of another schema", func(a *eas.Attestation) { a.Data = []byte{1, 2, 3} }, ReasonOnchainMismatch},
		{"another event time", func(a *eas.Attestation) {
			a.Data = data(event.Unix()-1, `{"type":"Point","coordinates":[2.35,48.85]}`)
		}, ReasonOnchainMismatch},
		{"zero event time", func(a *eas.Attestation) { a.Data = data(0, `[2.35, 48.85]`) }, ReasonOnchainMismatch},
		{"the same point as an array", func(a *eas.Attestation) { a.Data = data(event.Unix(), `[2.35, 48.85]`) }, ReasonPass},
		{"no point on chain", func(a *eas.Attestation) { a.Data = data(event.Unix(), `Paris`) }, ReasonOnchainMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := good
			if tt.mod != nil {
				tt.mod(&a)
			}
			res := v.judge(pol, index, uid, a, now)
			if res.reason != tt.reason {
				t.Fatalf("reason %q (%s), want %q", res.reason, res.field, tt.reason)
			}
			if res.reason == ReasonPass && (!res.proof.EventTimestamp.Equal(event) || res.proof.Lng != 2.35) {
				t.Fatalf("the proof in use does not carry the chain's values: %+v", res.proof)
			}
		})
	}
}

func TestKeepNewestKeepsTheNewestInOrder(t *testing.T) {
	at := func(h int) astral.Proof {
		return astral.Proof{UID: string(rune('a' + h)), EventTimestamp: time.Unix(int64(h)*3600, 0)}
	}
	var c []astral.Proof
	for _, h := range []int{3, 1, 7, 5, 9, 2, 8} {
		c = keepNewest(c, at(h), 3)
	}
	if len(c) != 3 || c[0].UID != at(9).UID || c[1].UID != at(8).UID || c[2].UID != at(7).UID {
		t.Fatalf("kept %v", c)
	}
}
