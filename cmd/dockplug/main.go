// Command dockplug serves Docker Engine plugins, lists the plugins a daemon
// can discover, and shows the state of running dockplug plugins.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	// After the first signal, restore the default action: a second one
	// ends the process at once instead of waiting for in-flight calls.
	context.AfterFunc(ctx, stop)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dockplug:", err)
		os.Exit(1)
	}
}
