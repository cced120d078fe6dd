package plugin

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is an error that carries the HTTP status the Server answers with.
// Drivers return it (or wrap it) to choose the status; any other error is
// answered with 500. The daemon reads the message from the body's "Err" key
// on every non-200 status, for every plugin kind including IPAM (G12).
type Error struct {
	Status int
	Msg    string // the whole message the daemon shows
	Err    error  // optional cause, for errors.Is/As; its text is in Msg
}

func (e *Error) Error() string {
	if e.Msg == "" && e.Err != nil {
		return e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given HTTP status.
func Errorf(status int, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Status: status, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// NotFound is shorthand for Errorf(404, ...).
func NotFound(format string, args ...any) error {
	return Errorf(http.StatusNotFound, format, args...)
}

// BadRequest is shorthand for Errorf(400, ...): the request was invalid and
// nothing was changed.
func BadRequest(format string, args ...any) error {
	return Errorf(http.StatusBadRequest, format, args...)
}

// Conflict is shorthand for Errorf(409, ...).
func Conflict(format string, args ...any) error {
	return Errorf(http.StatusConflict, format, args...)
}

// StatusOf returns the HTTP status an error is answered with: the Status of
// the first *Error in its chain, or of a *StatusError (so a Handler over a
// Client proxies a plugin's status), or 500.
func StatusOf(err error) int {
	var pe *Error
	if errors.As(err, &pe) && pe.Status >= 400 && pe.Status <= 599 {
		return pe.Status
	}
	var se *StatusError
	if errors.As(err, &se) && se.Status >= 400 && se.Status <= 599 {
		return se.Status
	}
	return http.StatusInternalServerError
}

// StatusError is what Client returns for a non-200 answer, with the text the
// daemon builds for it: "<Subsystem.Method>: <Err or raw body>".
type StatusError struct {
	Status int
	Method string
	Msg    string
}

func (e *StatusError) Error() string { return e.Method + ": " + e.Msg }

// IsNotFound reports whether err is a 404 answer from a plugin, which the
// daemon's network driver treats as "method not implemented".
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Status == http.StatusNotFound
}

// IsTransport reports whether err happened before an answer's headers
// arrived (connection refused, socket missing, connection closed before the
// status line): the only errors the daemon retries. A failure while reading
// the body of an answer is not one.
func IsTransport(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }
