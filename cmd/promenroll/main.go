// Command promenroll is the promenroll admission webhook and its CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errCheckFailed) && !errors.Is(err, errInput) {
			fmt.Fprintln(os.Stderr, "promenroll:", err)
		}
		os.Exit(exitCode(err))
	}
}
