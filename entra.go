package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// EntraScope is the scope of the Microsoft Entra ID tokens a region with a Credential sends: Azure AI services.
const EntraScope = "https://cognitiveservices.azure.com/.default"

const (
	// refreshMargin is how long before its expiry a token is replaced, as Azure's own bearer-token policy does; a
	// token that lives less than twice as long is replaced halfway through its life.
	refreshMargin = 5 * time.Minute
	// refreshRetry is how long a token that is still valid is used, unrefreshed, after a refresh failed.
	refreshRetry = 30 * time.Second
	// failureHold is how long a failed fetch's error is given again, without a new fetch, when there is no valid
	// token: regions that share the credential fail at once instead of each waiting for the identity service.
	failureHold = 5 * time.Second
)

// tokenSource keeps one credential's current token and replaces it before it expires. Requests share it: while a
// refresh is in flight, those that still hold a valid token use it and those that do not wait for the refresh, so
// one fetch serves them all. It has no goroutine: the request that finds the token due fetches the next one.
type tokenSource struct {
	cred   azcore.TokenCredential
	logger *slog.Logger

	mu         sync.Mutex
	header     []string  // "Bearer <token>" for the Authorization header; nil when there is no usable token
	tokens     [2]string // the current and the previous token, scrubbed from error answers
	expires    time.Time
	refreshAt  time.Time
	refreshing *refresh  // the fetch in flight, if any
	failedAt   time.Time // when a refresh of a still-valid token last failed
	failure    error     // the last failed fetch's error, given again until failureHold has passed
	failureAt  time.Time
}

// refresh is one fetch of a token; done is closed when it ends, and the requests that waited for it share its
// result.
type refresh struct {
	done      chan struct{}
	header    []string // the Authorization value it gave; nil when it failed
	err       error
	abandoned bool // the fetching request's own context ended: the others fetch again rather than share its error
}

// tokenSources gives regions that share a credential one tokenSource: one token, one refresh.
type tokenSources map[azcore.TokenCredential]*tokenSource

func (m tokenSources) get(cred azcore.TokenCredential, logger *slog.Logger) *tokenSource {
	// Only pointers are shared: a credential of another kind may not be comparable, and == would panic.
	if reflect.TypeOf(cred).Kind() != reflect.Pointer {
		return &tokenSource{cred: cred, logger: logger}
	}
	if s, ok := m[cred]; ok {
		return s
	}
	s := &tokenSource{cred: cred, logger: logger}
	m[cred] = s
	return s
}

// authorization returns the Authorization header value to send now, fetching a token first when there is no valid
// one. Its errors are a failure of the region, not of the request: they come from the credential.
func (s *tokenSource) authorization(ctx context.Context) ([]string, error) {
	for {
		s.mu.Lock()
		now := time.Now()
		valid := s.header != nil && now.Before(s.expires)
		if valid && (now.Before(s.refreshAt) || s.refreshing != nil || now.Sub(s.failedAt) < refreshRetry) {
			h := s.header
			s.mu.Unlock()
			return h, nil
		}
		if !valid && s.failure != nil && s.refreshing == nil && now.Sub(s.failureAt) < failureHold {
			err := s.failure
			s.mu.Unlock()
			return nil, err
		}
		if r := s.refreshing; r != nil {
			s.mu.Unlock()
			select {
			case <-r.done:
			case <-ctx.Done():
				return nil, context.Cause(ctx)
			}
			switch {
			case r.header != nil:
				return r.header, nil
			case !r.abandoned:
				return nil, r.err
			}
			continue // abandoned by its request: fetch again
		}
		r := &refresh{done: make(chan struct{})}
		s.refreshing = r
		s.mu.Unlock()
		return s.fetch(ctx, r)
	}
}

// fetch gets a new token for refresh r. A panicking credential still ends r, so that no request waits forever.
func (s *tokenSource) fetch(ctx context.Context, r *refresh) (header []string, err error) {
	defer func() {
		p := recover()
		if p != nil {
			err = fmt.Errorf("the credential panicked: %v", p)
		}
		if err != nil {
			// The error goes to every request that waited for this fetch, and azidentity's errors are not safe
			// to print concurrently: print it once.
			err = &sharedError{msg: err.Error(), err: err}
		}
		s.mu.Lock()
		now := time.Now()
		r.err, r.abandoned = err, err != nil && ctx.Err() != nil
		// The current token still works: use it, and try again in a while. That holds too when the request that
		// fetched gave up (its attempt timed out): the region is not to blame for a slow identity service while
		// its token lasts.
		kept := err != nil && s.header != nil && now.Before(s.expires)
		if kept {
			s.failedAt = now
			header = s.header
		}
		if err != nil && !r.abandoned && !kept {
			s.failure, s.failureAt = err, now
		}
		if err == nil {
			s.failure = nil
		}
		r.header = header
		expires := s.expires
		s.refreshing = nil
		s.mu.Unlock()
		close(r.done)
		if kept && s.logger != nil && context.Cause(ctx) != context.Canceled {
			s.logger.LogAttrs(ctx, slog.LevelWarn, "failover: refreshing the Entra ID token failed; the current one is used until it expires",
				slog.Time("expires", expires), slog.String("error", oneLine(r.err.Error())))
		}
		if kept {
			err = nil
		}
		if p != nil {
			panic(p)
		}
	}()
	tok, err := s.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{EntraScope}})
	if err != nil {
		return nil, err
	}
	if tok.Token == "" || !validSecret(tok.Token) {
		return nil, errors.New("the credential returned an empty token or one with spaces, quotes or control characters")
	}
	header = []string{"Bearer " + tok.Token}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if tok.Token != s.tokens[0] {
		s.tokens = [2]string{tok.Token, s.tokens[0]}
	}
	if !tok.ExpiresOn.After(now) {
		// A token without a future expiry serves the request that fetched it and is not kept.
		s.header = nil
		return header, nil
	}
	s.header, s.expires = header, tok.ExpiresOn
	s.refreshAt = tok.ExpiresOn.Add(-min(refreshMargin, tok.ExpiresOn.Sub(now)/2))
	if tok.RefreshOn.After(now) && tok.RefreshOn.Before(s.refreshAt) {
		// The identity service's own advice, as MSAL gives it. One already past is ignored: MSAL hands a cached
		// token back with its old RefreshOn when it cannot refresh, and taking it would fetch on every request.
		s.refreshAt = tok.RefreshOn
	}
	return header, nil
}

// secrets returns the tokens that must never leave.
func (s *tokenSource) secrets() [2]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens
}

// sharedError is an error with its message printed once.
type sharedError struct {
	msg string
	err error
}

func (e *sharedError) Error() string { return e.msg }
func (e *sharedError) Unwrap() error { return e.err }

// ErrCredential is matched by the cause of an attempt whose region's Entra ID credential gave no token. The cause
// is a *CredentialError.
var ErrCredential = errors.New("no Entra ID token")

// CredentialError is the cause of an attempt that was not sent because the region's Entra ID credential gave no
// token. The region rests, and the request goes on to the next one.
type CredentialError struct {
	// Region is the region's name.
	Region string
	// Err is the credential's error, such as an *azidentity.AuthenticationFailedError, or the context's.
	Err error
}

// Error says which region had no token and why, in the credential's own words.
func (e *CredentialError) Error() string {
	return fmt.Sprintf("no Entra ID token for %s: %v", e.Region, e.Err)
}

// Is reports whether target is ErrCredential.
func (e *CredentialError) Is(target error) bool { return target == ErrCredential }

// Unwrap returns the credential's error.
func (e *CredentialError) Unwrap() error { return e.Err }

// credentialRest says how a region rests when its credential gave no token. A credential that cannot work here
// (none is configured on this machine, or the identity service refused it) is a fault, like a rejected key: the
// region rests long and the fault is logged. A token service that is down or slow is transient.
func credentialRest(err error) restKind {
	var failed *azidentity.AuthenticationFailedError
	if errors.As(err, &failed) {
		if resp := failed.RawResponse; resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			switch resp.StatusCode {
			case http.StatusRequestTimeout, http.StatusTooManyRequests,
				http.StatusNotFound, http.StatusGone: // the VM metadata service's "updating, try again"
				return restNoToken
			}
			return restFault
		}
		return restNoToken
	}
	var permanent interface{ NonRetriable() } // azidentity's "credential unavailable": nothing to sign in with here
	if errors.As(err, &permanent) {
		return restFault
	}
	return restNoToken
}
