package betterauth

import "time"

// User is the part of Better-Auth's user row the gateway reads. Role, Banned
// and BanExpires come from the admin plugin; without it they stay zero.
type User struct {
	ID    string
	Email string
	Name  string
	Role  string

	Banned bool
	// BanExpires is when a ban lifts; zero means never.
	BanExpires time.Time

	hdr userHeaders
}

// userHeaders are a user's values encoded for headers, set by Seal.
type userHeaders struct {
	id, email, name, role string
	sealed                bool
}

// BannedAt reports whether the admin plugin's ban is in force at now.
func (u *User) BannedAt(now time.Time) bool {
	return u.Banned && (u.BanExpires.IsZero() || now.Before(u.BanExpires))
}

// Organization is the part of the organization plugin's organization row
// the gateway reads: the owner of an organization-owned API key.
type Organization struct {
	ID   string
	Slug string
	Name string

	hdr orgHeaders
}

// orgHeaders are an organization's values encoded for headers, set by Seal.
type orgHeaders struct {
	id, slug, name string
	sealed         bool
}

// Membership is a session's active organization (the organization plugin's
// session.activeOrganizationId) and the user's member.role in it. A session
// has one only when the user is still a member of its active organization:
// Better-Auth leaves activeOrganizationId set on the other sessions of a
// member it removes.
type Membership struct {
	OrgID string
	// Role is member.role: one role or several, comma-separated.
	Role string

	hdrOrgID, hdrRole string
	sealed            bool
}

// APIKey is the part of an api-key row the gateway reads, joined with its
// owner: a user, or an organization for a configuration whose references
// is "organization".
type APIKey struct {
	ID string
	// ReferenceID is the owner's id as the row stores it (referenceId, or
	// userId for the 1.3/1.4 table): a user's or an organization's,
	// depending on the key's configuration.
	ReferenceID string
	// ConfigID is the api-key plugin configuration the key belongs to
	// ("" for the legacy table without the column).
	ConfigID string
	// Enabled is false only when the row says false: NULL counts as enabled,
	// as in Better-Auth.
	Enabled bool
	// ExpiresAt is zero when the key never expires.
	ExpiresAt time.Time
	// Remaining is the number of uses left; HasRemaining is false for NULL
	// (unlimited).
	Remaining    int64
	HasRemaining bool
	// RefillInterval is zero when unset; HasRefillAmount is false when
	// refillAmount is NULL.
	RefillInterval  time.Duration
	RefillAmount    int64
	HasRefillAmount bool
	LastRefillAt    time.Time
	CreatedAt       time.Time
	// Permissions are the key's resource → actions (the permissions column,
	// JSON); nil when it has none, or none that parse.
	Permissions Permissions
	// AllowedIPs are the client addresses the key may be used from, read
	// from its metadata when the gateway is told which field holds them
	// (see ParseAllowedIPs); nil when the key is unrestricted, or when the
	// gateway does not read metadata.
	AllowedIPs *IPAllowList

	// User is the user whose id is ReferenceID, and Org the organization
	// whose id is; each nil when there is no such row (or no organization
	// table). Which one owns the key is the configuration's to say (see
	// Options.OrgConfigIDs).
	User *User
	Org  *Organization

	hdrID  string // ID encoded for headers, set by Seal
	sealed bool
}

// Session is the part of a session row the gateway reads, joined with its
// user.
type Session struct {
	ID        string
	ExpiresAt time.Time
	User      *User
	// Org is the session's active organization and the user's role there;
	// nil without one, or when the user is not a member of it.
	Org *Membership

	hdrID  string // ID encoded for headers, set by Seal
	sealed bool
}

// Record is what a Store found for a Lookup: an API key, a session, an
// OAuth access token, or nothing (all nil).
type Record struct {
	APIKey  *APIKey
	Session *Session
	OAuth   *OAuthToken
}

// Found reports whether the lookup matched a row.
func (r Record) Found() bool { return r.APIKey != nil || r.Session != nil || r.OAuth != nil }

// Seal precomputes the header-safe forms of the record's values, so that a
// record served many times costs no encoding per request. It is an
// optimisation only: an unsealed record gives the same headers, encoded on
// each use. The cache (package cache) is its one caller: it seals every
// record it keeps or hands out, once, before anyone else can read it;
// stores do not seal. Seal writes to the record unless it is sealed
// already, so it must not be called on a record others may be reading
// unsealed.
func (r Record) Seal() Record {
	if k := r.APIKey; k != nil && !k.sealed {
		k.hdrID, k.sealed = EncodeHeaderValue(k.ID), true
		k.User.seal()
		k.Org.seal()
	}
	if s := r.Session; s != nil && !s.sealed {
		s.hdrID, s.sealed = EncodeHeaderValue(s.ID), true
		s.User.seal()
		s.Org.seal()
	}
	if t := r.OAuth; t != nil {
		t.seal()
	}
	return r
}

func (o *Organization) seal() {
	if o != nil && !o.hdr.sealed {
		o.hdr = o.encode()
	}
}

func (o *Organization) encode() orgHeaders {
	return orgHeaders{id: EncodeHeaderValue(o.ID), slug: EncodeHeaderValue(o.Slug), name: EncodeHeaderValue(o.Name), sealed: true}
}

func (o *Organization) headers() orgHeaders {
	if o.hdr.sealed {
		return o.hdr
	}
	return o.encode()
}

// HeaderValues returns the encoded organization values (id, slug, name),
// for placeholders.
func (o *Organization) HeaderValues() (id, slug, name string) {
	h := o.headers()
	return h.id, h.slug, h.name
}

func (m *Membership) seal() {
	if m != nil && !m.sealed {
		m.hdrOrgID, m.hdrRole, m.sealed = EncodeHeaderValue(m.OrgID), EncodeHeaderValue(m.Role), true
	}
}

// HeaderValues returns the encoded organization id and role, for
// placeholders.
func (m *Membership) HeaderValues() (orgID, role string) {
	if m.sealed {
		return m.hdrOrgID, m.hdrRole
	}
	return EncodeHeaderValue(m.OrgID), EncodeHeaderValue(m.Role)
}

func (u *User) seal() {
	if u != nil && !u.hdr.sealed {
		u.hdr = u.encode()
	}
}

func (u *User) encode() userHeaders {
	return userHeaders{
		id:     EncodeHeaderValue(u.ID),
		email:  EncodeHeaderValue(u.Email),
		name:   EncodeHeaderValue(u.Name),
		role:   EncodeHeaderValue(u.Role),
		sealed: true,
	}
}

// headers returns the encoded values, sealed or encoded now.
func (u *User) headers() userHeaders {
	if u.hdr.sealed {
		return u.hdr
	}
	return u.encode()
}

func (k *APIKey) headerID() string {
	if k.sealed {
		return k.hdrID
	}
	return EncodeHeaderValue(k.ID)
}

func (s *Session) headerID() string {
	if s.sealed {
		return s.hdrID
	}
	return EncodeHeaderValue(s.ID)
}

// HeaderValues returns the encoded identity values (id, email, name, role),
// for placeholders.
func (u *User) HeaderValues() (id, email, name, role string) {
	h := u.headers()
	return h.id, h.email, h.name, h.role
}
