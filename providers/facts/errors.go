package facts

import (
	"errors"
	"fmt"
)

// Code is a stable machine-readable reason. It prefixes the per-key error that
// Gatekeeper caches and policy matches on, so its values never change.
type Code string

const (
	// Definitive: the answer will not change by asking again soon.
	CodeInvalidReference Code = "invalid_reference"
	CodeNotAllowed       Code = "registry_not_allowed"
	CodeNotFound         Code = "not_found"
	CodeUnauthorized     Code = "unauthorized"
	CodeInvalidContent   Code = "invalid_content"
	// Transient: could not look (timeout, throttling, 5xx, connection). Never
	// cached, never a verdict about the image.
	CodeUnavailable Code = "unavailable"
)

// Definitive reports whether an error with this code is an answer about the
// image rather than a failure to look.
func (c Code) Definitive() bool { return c != CodeUnavailable && c != "" }

// ErrTransient is wrapped by every error that means "could not look".
var ErrTransient = errors.New("transient")

// Error is a failure to produce facts for one image.
type Error struct {
	Code  Code
	Image string
	Err   error
}

var _ error = (*Error)(nil)

// Error reads "<code>: <image>: <cause>", the form Gatekeeper caches and
// templates print.
func (e *Error) Error() string {
	if e.Image == "" {
		return fmt.Sprintf("%s: %v", e.Code, e.Err)
	}
	return fmt.Sprintf("%s: %s: %v", e.Code, e.Image, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrTransient) true for transient codes.
func (e *Error) Is(target error) bool {
	return target == ErrTransient && !e.Code.Definitive()
}

// Errorf builds an *Error with a formatted cause.
func Errorf(code Code, image, format string, args ...any) *Error {
	return &Error{Code: code, Image: image, Err: fmt.Errorf(format, args...)}
}

// CodeOf returns the code of err, or CodeUnavailable when err carries none:
// an unknown failure is never taken as a verdict.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeUnavailable
}
