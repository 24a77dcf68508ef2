// Command imagegate decides whether a container image may run: it serves
// Gatekeeper external data and kube-apiserver ImageReviews, and prints the
// facts it knows about images.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errDenied) {
			fmt.Fprintln(os.Stderr, "imagegate:", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks errors in how imagegate was invoked (exit 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func exitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	if errors.Is(err, errDenied) {
		return 1
	}
	return 1
}

const usage = `imagegate decides whether a container image may run.

Usage:
  imagegate serve --config FILE         serve HTTPS (Gatekeeper external data, ImageReviews)
  imagegate facts [--config FILE] IMAGE…  print the facts for images as a JSON array
  imagegate eval [--config FILE] (-f REVIEW.json | --image I… [--namespace N] [--annotation K=V]…)
                                          evaluate an ImageReview locally (exit 1 when denied)
  imagegate certs --dir DIR [--host H]…   write a dev CA, server and client certs
  imagegate version                       print the version
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("a subcommand is required")}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "facts":
		return factsCmd(ctx, args[1:], stdout, stderr)
	case "eval":
		return evalCmd(ctx, args[1:], stdout, stderr)
	case "certs":
		return certsCmd(args[1:], stdout, stderr)
	case "version":
		return versionCmd(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown subcommand %q", args[0])}
}
