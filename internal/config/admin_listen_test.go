package config

import (
	"strings"
	"testing"
)

func TestHTTPAdminListen(t *testing.T) {
	tests := []struct {
		name, http string
		want       string // AdminListen, when valid
		problem    string // in the error, when not
	}{
		{"absent", "", "", ""},
		{"empty", `{ admin_listen: "" }`, "", ""},
		{"loopback", `{ admin_listen: "127.0.0.1:8081" }`, "127.0.0.1:8081", ""},
		{"not host:port", `{ admin_listen: "localhost" }`, "", `http.admin_listen: "localhost" is not host:port`},
		{"port out of range", `{ admin_listen: ":70000" }`, "", `http.admin_listen: ":70000" is not host:port`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := minimal
			if tt.http != "" {
				src += "http: " + tt.http + "\n"
			}
			p, err := Parse([]byte(src), "p.yaml")
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Fatalf("error %v; want one containing %q", err, tt.problem)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.HTTP.AdminListen != tt.want {
				t.Fatalf("AdminListen = %q; want %q", p.HTTP.AdminListen, tt.want)
			}
		})
	}
}
