package api

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcloudtt/mcloudtt/pkg/devices"
)

// Devices is what the API needs of the device registry of JWT authentication (a
// *devices.Registry in the cluster's Redis, which every broker replica reads at each CONNECT).
type Devices interface {
	List(ctx context.Context, device string) ([]devices.Stored, error)
	Add(ctx context.Context, device string, k devices.Key, expires time.Time, maxKeys int) (bool, error)
	Remove(ctx context.Context, device, id string) (int64, error)
}

// DeviceKey is one public key of a device, as the API shows it. Only public material is stored,
// so nothing private can be shown.
type DeviceKey struct {
	ID        string     `json:"id"`
	Algorithm string     `json:"algorithm"` // RS256 or ES256: what tokens signed by it use
	Format    string     `json:"format"`    // RSA_PEM, RSA_X509_PEM, ES256_PEM or ES256_X509_PEM
	Added     time.Time  `json:"added"`
	Expires   *time.Time `json:"expires,omitempty"` // absent: never
	PEM       string     `json:"pem"`               // the public key or certificate given
}

// DeviceKeysAnswer is the answer of GET /api/v1/devices/{id}/keys.
type DeviceKeysAnswer struct {
	Device  string      `json:"device"`
	MaxKeys int         `json:"max_keys"`
	Keys    []DeviceKey `json:"keys"`
}

// DeviceKeyRequest is the body of POST /api/v1/devices/{id}/keys.
type DeviceKeyRequest struct {
	// PEM is one PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE block.
	PEM string `json:"pem"`
	// Expires is when the key stops being accepted; absent: never.
	Expires *time.Time `json:"expires,omitempty"`
}

// DeviceKeyAnswer is the answer of POST /api/v1/devices/{id}/keys.
type DeviceKeyAnswer struct {
	Device  string    `json:"device"`
	Updated bool      `json:"updated"` // the device had the key: only its expiry changed
	Key     DeviceKey `json:"key"`
}

// keyIDPattern is a key id as devices.ParseKey makes it.
var keyIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func algorithm(format string) string {
	if strings.HasPrefix(format, "ES256") {
		return "ES256"
	}
	return "RS256"
}

func showKey(s devices.Stored) DeviceKey {
	k := DeviceKey{ID: s.ID, Algorithm: algorithm(s.Format), Format: s.Format, Added: s.Added.UTC(), PEM: s.PEM}
	if !s.Expires.IsZero() {
		e := s.Expires.UTC()
		k.Expires = &e
	}
	return k
}

// deviceOf returns the device id of the request's path, or answers 400 (or 503 without a
// registry) and returns false.
func (a *API) deviceOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	if a.o.Devices == nil {
		writeError(w, http.StatusServiceUnavailable, "no device registry")
		return "", false
	}
	device := r.PathValue("id")
	if err := devices.ValidateDeviceID(device); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return device, true
}

func (a *API) listDeviceKeys(w http.ResponseWriter, r *http.Request) {
	device, ok := a.deviceOf(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	defer cancel()
	stored, err := a.o.Devices.List(ctx, device)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	ans := DeviceKeysAnswer{Device: device, MaxKeys: a.o.MaxDeviceKeys, Keys: make([]DeviceKey, 0, len(stored))}
	for _, s := range stored {
		ans.Keys = append(ans.Keys, showKey(s))
	}
	writeJSON(w, http.StatusOK, ans)
}

// addDeviceKey stores a public key for the device: 201 when new, 200 when the device had it (its
// expiry replaced), 409 when the device has its maximum of keys. A private key is refused (400)
// and the refusal is audited, as the key has leaked by being sent.
func (a *API) addDeviceKey(w http.ResponseWriter, r *http.Request) {
	device, ok := a.deviceOf(w, r)
	if !ok {
		return
	}
	var req DeviceKeyRequest
	if !readJSON(w, r, &req) {
		return
	}
	k, err := devices.ParseKey([]byte(req.PEM))
	if err != nil {
		if errors.Is(err, devices.ErrPrivateKey) {
			a.audit(r, "device-key-add", device, http.StatusBadRequest, func(e *zerolog.Event) {
				e.Str("refused", "private key")
			})
		}
		writeError(w, http.StatusBadRequest, "pem: "+err.Error())
		return
	}
	var expires time.Time
	if req.Expires != nil {
		if expires = *req.Expires; !expires.After(time.Now()) {
			writeError(w, http.StatusBadRequest, "expires: "+expires.UTC().Format(time.RFC3339)+" is not in the future")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	updated, err := a.o.Devices.Add(ctx, device, k, expires, a.o.MaxDeviceKeys)
	cancel()
	status := http.StatusCreated
	switch {
	case errors.Is(err, devices.ErrTooManyKeys):
		status = http.StatusConflict
	case err != nil:
		status = http.StatusServiceUnavailable
	case updated:
		status = http.StatusOK
	}
	a.audit(r, "device-key-add", device, status, func(e *zerolog.Event) {
		e.Str("key", k.ID).Str("format", k.Format)
		if !expires.IsZero() {
			e.Time("expires", expires)
		}
	})
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	shown := devices.Stored{ID: k.ID, Format: k.Format, Expires: expires, Added: time.Now().Truncate(time.Second), PEM: k.PEM}
	writeJSON(w, status, DeviceKeyAnswer{Device: device, Updated: updated, Key: showKey(shown)})
}

// removeDeviceKey deletes one key of the device; 404 if it has no such key.
func (a *API) removeDeviceKey(w http.ResponseWriter, r *http.Request) {
	device, ok := a.deviceOf(w, r)
	if !ok {
		return
	}
	id := r.PathValue("keyid")
	if !keyIDPattern.MatchString(id) {
		writeError(w, http.StatusBadRequest, "key id "+id+": want the 32 hexadecimal digits that GET lists")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.o.Timeout)
	n, err := a.o.Devices.Remove(ctx, device, id)
	cancel()
	status := http.StatusOK
	switch {
	case err != nil:
		status = http.StatusServiceUnavailable
	case n == 0:
		status = http.StatusNotFound
	}
	a.audit(r, "device-key-remove", device, status, func(e *zerolog.Event) { e.Str("key", id) })
	switch {
	case err != nil:
		writeError(w, status, err.Error())
	case n == 0:
		writeError(w, status, "device "+device+" has no key "+id)
	default:
		writeJSON(w, status, map[string]string{"device": device, "removed": id})
	}
}
