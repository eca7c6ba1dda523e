package main

import "testing"

func TestBadFlagsExitTwo(t *testing.T) {
	t.Setenv("BARECLIENT_TEST_KEY", "k")
	ok := []string{"-account", "a", "-api-key-env", "BARECLIENT_TEST_KEY"}
	cases := map[string][]string{
		"no account":         {"-api-key-env", "BARECLIENT_TEST_KEY"},
		"empty key":          {"-account", "a", "-api-key-env", "BARECLIENT_TEST_UNSET"},
		"size not a decimal": append(ok, "-size", "1,5"),
		"zero size":          append(ok, "-size", "0"),
		"negative limit":     append(ok, "-limit", "-1"),
		"side":               append(ok, "-side", "hold"),
		"no streams":         append(ok, "-streams", "0"),
		"unknown flag":       append(ok, "-frobnicate"),
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			if code := run(args); code != 2 {
				t.Errorf("run(%q) = %d, want 2", args, code)
			}
		})
	}
}
