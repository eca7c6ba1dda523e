// Command treasuryd runs a crypto treasury against the Astra OTC desk (see
// SPEC.md). This file holds the command line only: subcommands, flags, exit
// codes and the logger; app.go composes the fx application.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"treasuryd/internal/config"
)

// version is the build's version. A release may set it with -ldflags
// "-X main.version=..."; otherwise it comes from the build info (init in
// version.go): module version, VCS revision and Go version.
var version string

// Exit codes (SPEC 4).
const (
	exitOK      = 0
	exitRuntime = 1
	exitUsage   = 2
	exitBreaks  = 3
	exitAudit   = 4 // audit verify found the chain broken
)

const usage = `usage: treasuryd <command> [flags]

commands:
  run -config PATH          run the daemon (SIGTERM/SIGINT: graceful stop)
  validate -config PATH     print "ok" or every policy error with its line
  reconcile -config PATH    run one reconciliation now and print the report
  addresses -config PATH    print deposit and express-deposit addresses
  replay -config PATH [-journal PATH] [-since 24h] [-program NAME] [-json]
  status [-addr URL] [-json]               summary of a running daemon's /status
  pause [-addr URL] [-reason TEXT] [-json] engage a running daemon's kill switch
  resume [-addr URL] [-reason TEXT] [-json] release it (token from TREASURYD_ADMIN_TOKEN)
  audit verify -journal PATH [-head SEQ:HASH]
                            check the audit chain: exit 0 intact, 4 broken
  audit export -journal PATH [-since 720h] [-format jsonl|csv]
  version                   print the version, commit and Go version

flags shared by the daemon's commands: -log-format json|console, -log-level debug|info|warn|error
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	case "status", "pause", "resume":
		return cmdClient(cmd, rest, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "audit": // takes -journal, not -config
		return cmdAudit(rest, stdout, stderr)
	}
	cmds := map[string]func(*common, []string, io.Writer, io.Writer) int{
		"run":       cmdRun,
		"validate":  cmdValidate,
		"reconcile": cmdReconcile,
		"addresses": cmdAddresses,
		"replay":    cmdReplay,
	}
	f, ok := cmds[cmd]
	if !ok {
		fmt.Fprintf(stderr, "treasuryd: unknown command %q\n\n%s", cmd, usage)
		return exitUsage
	}
	c := &common{}
	fs := flag.NewFlagSet("treasuryd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.configPath, "config", "", "policy file (required)")
	fs.StringVar(&c.logFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&c.logLevel, "log-level", "info", "lowest level logged: debug, info, warn or error")
	c.fs = fs
	if cmd == "replay" {
		replayFlags(fs, c)
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "treasuryd %s: unexpected arguments %q\n", cmd, fs.Args())
		return exitUsage
	}
	if c.configPath == "" {
		fmt.Fprintf(stderr, "treasuryd %s: -config is required\n", cmd)
		return exitUsage
	}
	if c.logFormat != "json" && c.logFormat != "console" {
		fmt.Fprintf(stderr, "treasuryd %s: -log-format must be json or console\n", cmd)
		return exitUsage
	}
	if err := c.level.UnmarshalText([]byte(c.logLevel)); err != nil || c.level < zapcore.DebugLevel || c.level > zapcore.ErrorLevel {
		fmt.Fprintf(stderr, "treasuryd %s: -log-level must be debug, info, warn or error, not %q\n", cmd, c.logLevel)
		return exitUsage
	}
	return f(c, rest, stdout, stderr)
}

// common holds the flags every subcommand shares.
type common struct {
	configPath string
	logFormat  string
	logLevel   string
	level      zapcore.Level
	fs         *flag.FlagSet
	replay     replayOptions
}

// loadPolicy loads the policy, printing every problem; ok=false means exit 2.
func (c *common) loadPolicy(stderr io.Writer) (*config.Policy, bool) {
	p, err := config.Load(c.configPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, false
	}
	return p, true
}

// logger builds the zap logger at -log-level: JSON (production) by default,
// console for people, in colour only when stderr is a terminal (colour codes
// in a file or a log collector are noise).
func (c *common) logger(stderr io.Writer) *zap.Logger {
	var enc zapcore.Encoder
	if c.logFormat == "console" {
		ec := zap.NewDevelopmentEncoderConfig()
		ec.EncodeLevel = zapcore.CapitalLevelEncoder
		if isTerminal(stderr) {
			ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(stderr)), c.level)
	return zap.New(core, zap.AddCaller())
}

// cmdValidate prints "ok", or every problem with its line, on stdout: the
// problems are this command's output.
func cmdValidate(c *common, _ []string, stdout, stderr io.Writer) int {
	if _, ok := c.loadPolicy(stdout); !ok {
		return exitUsage
	}
	fmt.Fprintln(stdout, "ok")
	return exitOK
}
