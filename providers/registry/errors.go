package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imagegate/imagegate/providers/facts"
	"github.com/imagegate/imagegate/providers/guard"
)

// errTooLarge is returned by the limiting transport when a response body is
// bigger than the limit for its kind.
var errTooLarge = errors.New("response body exceeds the size limit")

// classify maps a registry error to a facts code. Unknown errors are
// transient: a failure we cannot explain is never a verdict about the image.
func classify(err error) facts.Code {
	if err == nil {
		return ""
	}
	var fe *facts.Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	if errors.Is(err, guard.ErrNotAllowed) || ssrfRefusal(err) {
		return facts.CodeNotAllowed
	}
	if errors.Is(err, errTooLarge) {
		return facts.CodeInvalidContent
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return facts.CodeUnavailable
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return facts.CodeNotFound
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return facts.CodeUnauthorized
			}
		}
		switch te.StatusCode {
		case http.StatusNotFound:
			return facts.CodeNotFound
		case http.StatusUnauthorized, http.StatusForbidden:
			return facts.CodeUnauthorized
		}
	}
	return facts.CodeUnavailable
}

// wrap turns err into a *facts.Error for image, prefixing what was being done.
func wrap(image, op string, err error) error {
	var fe *facts.Error
	if errors.As(err, &fe) {
		return err
	}
	return &facts.Error{Code: classify(err), Image: image, Err: fmt.Errorf("%s: %w", op, describe(err))}
}

// describe shortens go-containerregistry's errors to what a person needs:
// the request, the status and the registry's own error code.
func describe(err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	msg := fmt.Sprintf("registry answered HTTP %d", te.StatusCode)
	if te.Request != nil {
		msg = fmt.Sprintf("%s %s: %s", te.Request.Method, te.Request.URL.Redacted(), msg)
	}
	if len(te.Errors) > 0 {
		d := te.Errors[0]
		msg += fmt.Sprintf(" (%s: %s)", d.Code, d.Message)
	}
	if te.StatusCode == http.StatusTooManyRequests {
		msg += ": rate limited, not a verdict on the image"
	}
	return &described{msg: msg, err: err}
}

type described struct {
	msg string
	err error
}

func (d *described) Error() string { return d.msg }
func (d *described) Unwrap() error { return d.err }

// headLacksDigest reports whether a HEAD failed only because the registry did
// not send the digest, size or media type headers, so a GET may still work.
func headLacksDigest(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "did not include Docker-Content-Digest") ||
		strings.Contains(msg, "did not include Content-Type") ||
		strings.Contains(msg, "did not include Content-Length")
}

// ssrfRefusal reports go-containerregistry's own SSRF refusals: a redirect
// to a private or link-local IP literal, a token realm (or a token-server
// redirect) on one. They come before the guard's dialer sees the address,
// as plain errors; without this they would be transient ("retry") while
// the guard's refusal of the same address by name is registry_not_allowed.
func ssrfRefusal(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SSRF protection: redirect from ") ||
		strings.Contains(msg, "is a private or link-local address")
}
