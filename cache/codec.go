package cache

import (
	"encoding/json"
	"errors"
	"net/netip"
	"time"

	"github.com/caddy-betterauth/caddy-betterauth/betterauth"
)

// CodecVersion is part of every shared-cache key, so that a gateway with a
// different encoding never reads another's entries. Entries are sealed
// since v2 (see Sealer); v3 carries API keys' permissions, which a v2
// entry would silently lack; v4 their allow-lists of client addresses, and
// the metadata field they were read from.
const CodecVersion = "v4"

// The shared-cache value of a record: its facts and when the entry expires.
// It holds no secret: no key hash, no session token.
type wireRecord struct {
	Expires int64       `json:"exp"` // unix milliseconds
	Epoch   uint64      `json:"ep"`  // the Remote's epoch when it was loaded
	Written int64       `json:"w"`   // unix milliseconds, by the writer's clock
	Key     *wireKey    `json:"k,omitempty"`
	Session *wireSess   `json:"s,omitempty"`
	User    wireUserRec `json:"u"`
}

type wireKey struct {
	ID             string `json:"id"`
	ConfigID       string `json:"cfg,omitempty"`
	Enabled        bool   `json:"on"`
	ExpiresAt      int64  `json:"exp,omitempty"`
	Remaining      *int64 `json:"rem,omitempty"`
	RefillInterval int64  `json:"rint,omitempty"` // milliseconds
	RefillAmount   *int64 `json:"ramt,omitempty"`
	LastRefillAt   int64  `json:"rlast,omitempty"`
	CreatedAt      int64  `json:"created,omitempty"`
	// Permissions as parsed; absent when the key has none.
	Permissions betterauth.Permissions `json:"perm,omitempty"`
	// IPField is the metadata field the allow-list was read from ("" when
	// the writer read none): a gateway reading another field, or none, does
	// not serve the entry, whose key might be restricted otherwise.
	IPField string `json:"ipf,omitempty"`
	// IPs is the key's allow-list (IPList true; absent when the key is
	// unrestricted), and IPProblem why a malformed one admits nobody.
	IPList    bool     `json:"ipl,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	IPProblem string   `json:"ipp,omitempty"`
}

type wireSess struct {
	ID        string `json:"id"`
	ExpiresAt int64  `json:"exp"`
}

type wireUserRec struct {
	ID         string `json:"id"`
	Email      string `json:"email,omitempty"`
	Name       string `json:"name,omitempty"`
	Role       string `json:"role,omitempty"`
	Banned     bool   `json:"banned,omitempty"`
	BanExpires int64  `json:"banExp,omitempty"`
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// stamp is what a shared entry says about itself: when it expires, the
// epoch it was loaded under and when it was written.
type stamp struct {
	expires time.Time
	epoch   uint64
	written time.Time
	// ipField is the metadata field an API key's allow-list was read
	// from (see wireKey.IPField).
	ipField string
}

// encode writes a found record with its stamp.
func encode(r betterauth.Record, st stamp) ([]byte, error) {
	w := wireRecord{Expires: st.expires.UnixMilli(), Epoch: st.epoch, Written: st.written.UnixMilli()}
	var u *betterauth.User
	switch {
	case r.APIKey != nil:
		k := r.APIKey
		wk := &wireKey{ID: k.ID, ConfigID: k.ConfigID, Enabled: k.Enabled, ExpiresAt: millis(k.ExpiresAt),
			RefillInterval: k.RefillInterval.Milliseconds(), LastRefillAt: millis(k.LastRefillAt), CreatedAt: millis(k.CreatedAt),
			Permissions: k.Permissions, IPField: st.ipField}
		if l := k.AllowedIPs; l != nil {
			wk.IPList, wk.IPProblem = true, l.Problem
			for _, p := range l.Prefixes {
				wk.IPs = append(wk.IPs, p.String())
			}
		}
		if k.HasRemaining {
			wk.Remaining = &k.Remaining
		}
		if k.HasRefillAmount {
			wk.RefillAmount = &k.RefillAmount
		}
		w.Key, u = wk, k.User
	case r.Session != nil:
		w.Session, u = &wireSess{ID: r.Session.ID, ExpiresAt: millis(r.Session.ExpiresAt)}, r.Session.User
	default:
		return nil, errors.New("cache: encoding an empty record")
	}
	w.User = wireUserRec{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Banned: u.Banned, BanExpires: millis(u.BanExpires)}
	return json.Marshal(w)
}

// decode reads a shared-cache value back into a record (unsealed: load
// seals it).
func decode(b []byte) (betterauth.Record, stamp, error) {
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return betterauth.Record{}, stamp{}, err
	}
	u := &betterauth.User{ID: w.User.ID, Email: w.User.Email, Name: w.User.Name, Role: w.User.Role,
		Banned: w.User.Banned, BanExpires: fromMillis(w.User.BanExpires)}
	var r betterauth.Record
	st := stamp{expires: time.UnixMilli(w.Expires), epoch: w.Epoch, written: time.UnixMilli(w.Written)}
	switch {
	case w.Key != nil:
		k := &betterauth.APIKey{ID: w.Key.ID, ConfigID: w.Key.ConfigID, Enabled: w.Key.Enabled, ExpiresAt: fromMillis(w.Key.ExpiresAt),
			RefillInterval: time.Duration(w.Key.RefillInterval) * time.Millisecond, LastRefillAt: fromMillis(w.Key.LastRefillAt),
			CreatedAt: fromMillis(w.Key.CreatedAt), Permissions: w.Key.Permissions, User: u}
		if w.Key.Remaining != nil {
			k.HasRemaining, k.Remaining = true, *w.Key.Remaining
		}
		if w.Key.RefillAmount != nil {
			k.HasRefillAmount, k.RefillAmount = true, *w.Key.RefillAmount
		}
		if w.Key.IPList {
			l := &betterauth.IPAllowList{Problem: w.Key.IPProblem, Prefixes: make([]netip.Prefix, 0, len(w.Key.IPs))}
			for _, s := range w.Key.IPs {
				p, err := netip.ParsePrefix(s)
				if err != nil {
					return betterauth.Record{}, stamp{}, err
				}
				l.Prefixes = append(l.Prefixes, p)
			}
			k.AllowedIPs = l
		}
		st.ipField = w.Key.IPField
		r.APIKey = k
	case w.Session != nil:
		r.Session = &betterauth.Session{ID: w.Session.ID, ExpiresAt: fromMillis(w.Session.ExpiresAt), User: u}
	default:
		return betterauth.Record{}, stamp{}, errors.New("cache: shared entry holds no record")
	}
	if u.ID == "" {
		return betterauth.Record{}, stamp{}, errors.New("cache: shared entry has no user")
	}
	return r, st, nil
}
