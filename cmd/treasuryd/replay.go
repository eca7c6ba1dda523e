package main

import (
	"flag"
	"fmt"
	"io"
	"time"
)

// replayOptions are the flags of `treasuryd replay`.
type replayOptions struct {
	journal string
	since   time.Duration
	program string
	json    bool
}

func replayFlags(fs *flag.FlagSet, c *common) {
	fs.StringVar(&c.replay.journal, "journal", "", "journal to read (default: the policy's state.path)")
	fs.DurationVar(&c.replay.since, "since", 24*time.Hour, "replay quotes received within this long")
	fs.StringVar(&c.replay.program, "program", "", "replay only this program")
	fs.BoolVar(&c.replay.json, "json", false, "print one JSON object")
}

func cmdReplay(c *common, _ []string, stdout, stderr io.Writer) int {
	if _, ok := c.loadPolicy(stderr); !ok {
		return exitUsage
	}
	fmt.Fprintln(stderr, "treasuryd replay: not implemented yet (the recorder and replay land with the replay issue)")
	return exitRuntime
}
