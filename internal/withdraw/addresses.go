package withdraw

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"treasuryd/internal/config"
)

// AddressDesk is the part of the Astra client `treasuryd addresses` uses
// (*astra.Client).
type AddressDesk interface {
	DepositAddress(ctx context.Context, network string) (string, error)
	ExpressDepositAddress(ctx context.Context, coin, network string) (string, error)
}

// Kinds of AddressRow.
const (
	KindDeposit = "deposit"
	KindExpress = "express"
)

// AddressRow is one deposit address of the account. Asset is empty for a
// plain deposit address, which the desk gives per network.
type AddressRow struct {
	Kind    string `json:"kind"`
	Asset   string `json:"asset,omitempty"`
	Network string `json:"network"`
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Addresses asks the desk for the deposit address of every network and the
// express deposit address of every asset+network the policy names (in the
// allowlist or the rebalance rules). A lookup that fails gives a row with
// Error set; the returned error joins them all, after every row was tried.
func Addresses(ctx context.Context, d AddressDesk, p *config.Policy) ([]AddressRow, error) {
	type pair struct{ asset, network string }
	networks := map[string]bool{}
	pairs := map[pair]bool{}
	add := func(asset, network string) {
		if network == "" {
			return
		}
		networks[network] = true
		if asset != "" {
			pairs[pair{asset, network}] = true
		}
	}
	for _, dst := range p.Withdraw.Allowlist {
		add(dst.Asset, dst.Network)
	}
	for _, r := range p.Rebalance.Rules {
		add(r.Asset, r.Network)
	}

	var rows []AddressRow
	var errs []error
	for _, n := range sortedKeys(networks) {
		row := AddressRow{Kind: KindDeposit, Network: n}
		addr, err := d.DepositAddress(ctx, n)
		if err != nil {
			row.Error = err.Error()
			errs = append(errs, fmt.Errorf("deposit address on %s: %w", n, err))
		}
		row.Address = addr
		rows = append(rows, row)
	}
	ps := make([]pair, 0, len(pairs))
	for k := range pairs {
		ps = append(ps, k)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].asset != ps[j].asset {
			return ps[i].asset < ps[j].asset
		}
		return ps[i].network < ps[j].network
	})
	for _, k := range ps {
		row := AddressRow{Kind: KindExpress, Asset: k.asset, Network: k.network}
		addr, err := d.ExpressDepositAddress(ctx, k.asset, k.network)
		if err != nil {
			row.Error = err.Error()
			errs = append(errs, fmt.Errorf("express deposit address of %s on %s: %w", k.asset, k.network, err))
		}
		row.Address = addr
		rows = append(rows, row)
	}
	return rows, errors.Join(errs...)
}

// WriteAddresses prints rows as an aligned table.
func WriteAddresses(w io.Writer, rows []AddressRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tASSET\tNETWORK\tADDRESS")
	for _, r := range rows {
		asset := r.Asset
		if asset == "" {
			asset = "-"
		}
		addr := r.Address
		if r.Error != "" {
			addr = "error: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Kind, asset, r.Network, addr)
	}
	return tw.Flush()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
