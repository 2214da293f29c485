package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
)

// reportCommand is what the long-running `herald bench` commands that end
// in an account (soak, crash-loop) share: their flags plus --json and
// --quiet, progress lines on stderr, a table or JSON on stdout, and the exit
// status 0 (the account is clean), 1 (it is not, or the run failed) or 2
// (bad flags).
type reportCommand[R any] struct {
	name  string // e.g. "bench soak"
	usage string // the text before the flags in -h
	flags func(fs *flag.FlagSet)
	// validate, if set, checks the parsed flags; an error is a usage
	// error (exit 2).
	validate func() error
	run      func(ctx context.Context, progress io.Writer) (R, error)
	report   func(w io.Writer, res R) error
	// verdict says what is wrong with a finished run, "" when nothing is.
	verdict func(res R) string
}

func (c reportCommand[R]) main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.flags(fs)
	jsonOut := fs.Bool("json", false, "print the result as one JSON object instead of the table")
	quiet := fs.Bool("quiet", false, "do not print progress lines")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), c.usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald %s: unexpected argument %q\n", c.name, fs.Arg(0))
		return 2
	}
	if c.validate != nil {
		if err := c.validate(); err != nil {
			fmt.Fprintf(stderr, "herald %s: %v\n", c.name, err)
			return 2
		}
	}
	var progress io.Writer = stderr
	if *quiet {
		progress = nil
	}
	res, err := c.run(ctx, progress)
	if err != nil {
		fmt.Fprintf(stderr, "herald %s: %v\n", c.name, err)
		return 1
	}
	if *jsonOut {
		err = json.NewEncoder(stdout).Encode(res)
	} else {
		err = c.report(stdout, res)
	}
	if err != nil {
		fmt.Fprintf(stderr, "herald %s: %v\n", c.name, err)
		return 1
	}
	if v := c.verdict(res); v != "" {
		fmt.Fprintf(stderr, "herald %s: %s\n", c.name, v)
		return 1
	}
	return 0
}
