package failovertest

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultTokenLifetime is how long an Identity's tokens live unless SetTokenLifetime says otherwise. It is under
// the 5 minutes within which MSAL (under azidentity) stops serving a token from its process-wide cache, so every
// GetToken reaches the endpoint and tests in one process do not see each other's tokens.
const DefaultTokenLifetime = 4 * time.Minute

// Identity is a fake managed identity endpoint in the style of Azure App Service. azidentity's
// ManagedIdentityCredential and DefaultAzureCredential fetch tokens from it when the IDENTITY_ENDPOINT and
// IDENTITY_HEADER variables point at it (see Env). A fake region started with WithEntraID accepts its tokens until
// they expire. It is safe for concurrent use.
type Identity struct {
	// URL is the token endpoint, for IDENTITY_ENDPOINT.
	URL string
	// Header is the secret that token requests must carry in X-IDENTITY-HEADER, for IDENTITY_HEADER.
	Header string

	mu       sync.Mutex
	lifetime time.Duration
	failure  int           // the status answered instead of a token; 0 issues tokens
	delay    time.Duration // how long each answer waits
	requests []TokenRequest
	expiry   map[string]time.Time // issued token → when it expires
	revoked  map[string]bool
	shutdown func()
	closing  chan struct{}
	once     sync.Once
}

// TokenRequest is what an Identity saw of one token request.
type TokenRequest struct {
	// Resource is the resource asked for: the scope without "/.default", such as
	// https://cognitiveservices.azure.com.
	Resource string
	// ClientID is the user-assigned identity asked for; empty for the system-assigned one.
	ClientID string
	// HeaderOK reports whether X-IDENTITY-HEADER carried the Identity's Header.
	HeaderOK bool
	// Status is the status answered; 0 until then, and for good when the client gave up first.
	Status int
	// Token is the token issued, if any.
	Token string
	// Time is when the request arrived.
	Time time.Time
}

// NewIdentity starts a fake identity endpoint on a loopback TCP port, or on n when it is not nil. Close it when done.
func NewIdentity(n *Network) *Identity {
	id := &Identity{Header: "identity-header-" + randomHex(), lifetime: DefaultTokenLifetime,
		expiry: make(map[string]time.Time), revoked: make(map[string]bool), closing: make(chan struct{})}
	if n != nil {
		id.URL, id.shutdown = n.serve(id)
	} else {
		srv := httptest.NewServer(id)
		id.URL, id.shutdown = srv.URL, srv.Close
	}
	id.URL += "/msi/token"
	return id
}

// Close stops the endpoint. Delayed answers end at once, with the connection closed. Calling it again does nothing.
func (id *Identity) Close() {
	id.once.Do(func() {
		close(id.closing)
		id.shutdown()
	})
}

// Env returns the variables that point azidentity's managed identity credential at this endpoint.
func (id *Identity) Env() map[string]string {
	return map[string]string{"IDENTITY_ENDPOINT": id.URL, "IDENTITY_HEADER": id.Header}
}

// SetTokenLifetime sets how long tokens issued from now on live. Default: DefaultTokenLifetime.
func (id *Identity) SetTokenLifetime(d time.Duration) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.lifetime = d
}

// Fail makes the endpoint answer status to every token request, as App Service does when the identity is not
// assigned (400) or the service is down (500, which azidentity retries). 0 issues tokens again.
func (id *Identity) Fail(status int) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.failure = status
}

// SetDelay makes every answer wait d first, as an identity service under strain does. 0 answers at once.
func (id *Identity) SetDelay(d time.Duration) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.delay = d
}

// Revoke makes regions refuse token from now on, as they do when the identity's role is removed.
func (id *Identity) Revoke(token string) {
	id.mu.Lock()
	defer id.mu.Unlock()
	id.revoked[token] = true
}

// Valid reports whether token was issued here, has not expired and was not revoked.
func (id *Identity) Valid(token string) bool {
	id.mu.Lock()
	defer id.mu.Unlock()
	expires, ok := id.expiry[token]
	return ok && time.Now().Before(expires) && !id.revoked[token]
}

// Requests returns what the endpoint saw of each token request, in order of arrival.
func (id *Identity) Requests() []TokenRequest {
	id.mu.Lock()
	defer id.mu.Unlock()
	return append([]TokenRequest(nil), id.requests...)
}

// Tokens returns every token issued, in order.
func (id *Identity) Tokens() []string {
	var tokens []string
	for _, r := range id.Requests() {
		if r.Token != "" {
			tokens = append(tokens, r.Token)
		}
	}
	return tokens
}

// ServeHTTP answers one token request as App Service's identity endpoint (api-version 2019-08-01) does.
func (id *Identity) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	req := TokenRequest{Resource: q.Get("resource"), ClientID: q.Get("client_id"),
		HeaderOK: r.Header.Get("X-IDENTITY-HEADER") == id.Header, Time: time.Now()}
	id.mu.Lock()
	failure, lifetime, delay := id.failure, id.lifetime, id.delay
	index := len(id.requests)
	id.requests = append(id.requests, req) // recorded on arrival, so a request the client gave up on is seen
	id.mu.Unlock()
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return
		case <-id.closing:
			panic(http.ErrAbortHandler) // closes the connection: no answer, rather than an empty 200
		}
	}

	var body any
	switch {
	case r.Method != http.MethodGet || q.Get("api-version") == "" || req.Resource == "":
		req.Status, body = http.StatusBadRequest, appServiceError(http.StatusBadRequest, "The request is missing the api-version or resource parameter.")
	case !req.HeaderOK:
		req.Status, body = http.StatusUnauthorized, appServiceError(http.StatusUnauthorized, "The X-IDENTITY-HEADER is missing or wrong.")
	case failure != 0:
		req.Status, body = failure, appServiceError(failure, "The managed identity could not issue a token.")
	default:
		req.Status, req.Token = http.StatusOK, "fake-entra-token-"+randomHex()
		expires := req.Time.Add(lifetime)
		body = map[string]string{"access_token": req.Token, "expires_on": strconv.FormatInt(expires.Unix(), 10),
			"resource": req.Resource, "token_type": "Bearer", "client_id": req.ClientID}
		id.mu.Lock()
		id.expiry[req.Token] = expires
		id.mu.Unlock()
	}
	id.mu.Lock()
	id.requests[index] = req
	id.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(req.Status)
	_ = json.NewEncoder(w).Encode(body)
}

func appServiceError(status int, message string) map[string]any {
	return map[string]any{"statusCode": status, "message": message, "correlationId": randomHex()}
}

// WithEntraID makes a fake region accept, besides its key, a Bearer token that id issued and that is still
// valid. A region that should accept only tokens can be given WithKey with a key nobody sends.
func WithEntraID(id *Identity) Option { return func(s *Server) { s.identity = id } }

// bearerValid reports whether the request carries a token the server's identity accepts.
func (s *Server) bearerValid(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.identity != nil && s.identity.Valid(token)
}

// EntraUnauthorized answers 401 as Azure does for a missing, expired or wrong Entra ID token. Its body is not in
// the usual error shape, so go-openai returns an *openai.RequestError for it.
func EntraUnauthorized() Reply {
	return Reply{Status: http.StatusUnauthorized, Body: fmt.Sprintf(`{"statusCode": 401, "message": %q}`,
		"Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired.")}
}

func randomHex() string {
	var b [8]byte
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return hex.EncodeToString(b[:])
}
