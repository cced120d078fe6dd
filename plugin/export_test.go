package plugin

// WithRetryHook calls f with the error about to be retried, before the
// client sleeps: tests use it to change the world between two attempts
// without timing assumptions.
func WithRetryHook(f func(err error)) ClientOption {
	return func(c *clientConfig) { c.onRetry = f }
}
