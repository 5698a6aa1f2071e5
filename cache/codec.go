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
// entry would silently lack; v4 carries organizations (an API key's owner
// id and organization, a session's active organization and role), keys
// whose owner row is missing, and keys' allow-lists of client addresses
// with the metadata field they were read from; v5 carries OAuth access
// tokens.
const CodecVersion = "v5"

// The shared-cache value of a record: its facts and when the entry expires.
// It holds no secret: no key hash, no session token.
type wireRecord struct {
	Expires int64        `json:"exp"` // unix milliseconds
	Epoch   uint64       `json:"ep"`  // the Remote's epoch when it was loaded
	Written int64        `json:"w"`   // unix milliseconds, by the writer's clock
	Key     *wireKey     `json:"k,omitempty"`
	Session *wireSess    `json:"s,omitempty"`
	OAuth   *wireOAuth   `json:"o,omitempty"`
	User    *wireUserRec `json:"u,omitempty"` // absent for a key or token without a user row
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
	// Ref is the owner id as the row stores it; Org the organization
	// with that id, when there is one.
	Ref string   `json:"ref,omitempty"`
	Org *wireOrg `json:"org,omitempty"`
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

type wireOrg struct {
	ID   string `json:"id"`
	Slug string `json:"slug,omitempty"`
	Name string `json:"name,omitempty"`
}

type wireSess struct {
	ID        string `json:"id"`
	ExpiresAt int64  `json:"exp"`
	// The active organization and the user's role there, when a member.
	OrgID   string `json:"org,omitempty"`
	OrgRole string `json:"orole,omitempty"`
}

// wireOAuth is an OAuth access token's row, without the token or its hash.
type wireOAuth struct {
	ID        string   `json:"id"`
	ClientID  string   `json:"cid"`
	UserID    string   `json:"uid,omitempty"`
	SessionID string   `json:"sid,omitempty"`
	SessExp   int64    `json:"sexp,omitempty"`
	Scopes    []string `json:"sc,omitempty"`
	Resources []string `json:"res,omitempty"`
	ResMiss   bool     `json:"resm,omitempty"`
	ExpiresAt int64    `json:"exp,omitempty"`
	Revoked   bool     `json:"rev,omitempty"`
	Bound     bool     `json:"cnf,omitempty"`
	Legacy    bool     `json:"leg,omitempty"`
	CheckBy   int64    `json:"chk,omitempty"`
	// The client's row, when there is one.
	Client         bool   `json:"c,omitempty"`
	ClientName     string `json:"cname,omitempty"`
	ClientDisabled bool   `json:"coff,omitempty"`
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
			Permissions: k.Permissions, Ref: k.ReferenceID, IPField: st.ipField}
		if o := k.Org; o != nil {
			wk.Org = &wireOrg{ID: o.ID, Slug: o.Slug, Name: o.Name}
		}
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
		ws := &wireSess{ID: r.Session.ID, ExpiresAt: millis(r.Session.ExpiresAt)}
		if m := r.Session.Org; m != nil {
			ws.OrgID, ws.OrgRole = m.OrgID, m.Role
		}
		w.Session, u = ws, r.Session.User
	case r.OAuth != nil:
		t := r.OAuth
		w.OAuth = &wireOAuth{ID: t.ID, ClientID: t.ClientID, UserID: t.UserID, SessionID: t.SessionID,
			SessExp: millis(t.SessionExpiresAt), Scopes: t.Scopes, Resources: t.Resources, ResMiss: t.ResourceMissing,
			ExpiresAt: millis(t.ExpiresAt), Revoked: t.Revoked, Bound: t.Bound, Legacy: t.Legacy, CheckBy: millis(t.CheckBy)}
		if c := t.Client; c != nil {
			w.OAuth.Client, w.OAuth.ClientName, w.OAuth.ClientDisabled = true, c.Name, c.Disabled
		}
		u = t.User
	default:
		return nil, errors.New("cache: encoding an empty record")
	}
	if u != nil {
		w.User = &wireUserRec{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Banned: u.Banned, BanExpires: millis(u.BanExpires)}
	}
	return json.Marshal(w)
}

// decode reads a shared-cache value back into a record (unsealed: load
// seals it).
func decode(b []byte) (betterauth.Record, stamp, error) {
	var w wireRecord
	if err := json.Unmarshal(b, &w); err != nil {
		return betterauth.Record{}, stamp{}, err
	}
	var u *betterauth.User
	if wu := w.User; wu != nil {
		if wu.ID == "" {
			return betterauth.Record{}, stamp{}, errors.New("cache: shared entry has a user without an id")
		}
		u = &betterauth.User{ID: wu.ID, Email: wu.Email, Name: wu.Name, Role: wu.Role,
			Banned: wu.Banned, BanExpires: fromMillis(wu.BanExpires)}
	}
	var r betterauth.Record
	st := stamp{expires: time.UnixMilli(w.Expires), epoch: w.Epoch, written: time.UnixMilli(w.Written)}
	switch {
	case w.Key != nil:
		k := &betterauth.APIKey{ID: w.Key.ID, ConfigID: w.Key.ConfigID, Enabled: w.Key.Enabled, ExpiresAt: fromMillis(w.Key.ExpiresAt),
			RefillInterval: time.Duration(w.Key.RefillInterval) * time.Millisecond, LastRefillAt: fromMillis(w.Key.LastRefillAt),
			CreatedAt: fromMillis(w.Key.CreatedAt), Permissions: w.Key.Permissions, ReferenceID: w.Key.Ref, User: u}
		if o := w.Key.Org; o != nil {
			if o.ID == "" {
				return betterauth.Record{}, stamp{}, errors.New("cache: shared entry has an organization without an id")
			}
			k.Org = &betterauth.Organization{ID: o.ID, Slug: o.Slug, Name: o.Name}
		}
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
		if u == nil {
			return betterauth.Record{}, stamp{}, errors.New("cache: shared entry has no user")
		}
		r.Session = &betterauth.Session{ID: w.Session.ID, ExpiresAt: fromMillis(w.Session.ExpiresAt), User: u}
		if w.Session.OrgID != "" {
			r.Session.Org = &betterauth.Membership{OrgID: w.Session.OrgID, Role: w.Session.OrgRole}
		}
	case w.OAuth != nil:
		o := w.OAuth
		if o.ID == "" || o.ClientID == "" || (u != nil && u.ID != o.UserID) {
			return betterauth.Record{}, stamp{}, errors.New("cache: shared entry has a malformed OAuth token")
		}
		t := &betterauth.OAuthToken{ID: o.ID, ClientID: o.ClientID, UserID: o.UserID, User: u, SessionID: o.SessionID,
			SessionExpiresAt: fromMillis(o.SessExp), Scopes: o.Scopes, Resources: o.Resources, ResourceMissing: o.ResMiss,
			ExpiresAt: fromMillis(o.ExpiresAt), Revoked: o.Revoked, Bound: o.Bound, Legacy: o.Legacy, CheckBy: fromMillis(o.CheckBy)}
		if o.Client {
			t.Client = &betterauth.OAuthClient{ClientID: o.ClientID, Name: o.ClientName, Disabled: o.ClientDisabled}
		}
		r.OAuth = t
	default:
		return betterauth.Record{}, stamp{}, errors.New("cache: shared entry holds no record")
	}
	return r, st, nil
}
