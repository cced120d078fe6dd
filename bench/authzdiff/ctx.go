package authzdiff

import (
	"context"
	"net/http"
)

func contextWith(r *http.Request, d *Dispatch) context.Context {
	return context.WithValue(r.Context(), dispatchKey{}, d)
}
