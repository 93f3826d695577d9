//! The bank's staff: users with roles, always signing in with a password
//! and an authenticator code; what each role may do; and maker-checker
//! approvals for the actions one person must not take alone.
//!
//! Every staff sign-in, every look at a customer and every action is in the
//! audit log with the staff member as actor.

use coffer_audit::{Entry, Filter, Outcome, Record};
use coffer_core::Secret;
use coffer_store::sql::Sql;
use coffer_store::sql_params;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::factors::{totp, STEP_SECONDS};
use crate::{
    random_hex, same, Contact, Context, CustomerView, Identity, IdentityError, NANOS_PER_SECOND,
};

pub(crate) const STAFF_TOTP_CONTEXT: &str = "staff.totp_seed";
pub const STAFF_TOKEN_PREFIX: &str = "ss_";
/// Staff sessions are short: 15 minutes idle, 8 hours at most.
const STAFF_IDLE_SECONDS: i64 = 15 * 60;
const STAFF_ABSOLUTE_SECONDS: i64 = 8 * 60 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Support,
    RiskAnalyst,
    ComplianceOfficer,
    ProductManager,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Support,
        Role::RiskAnalyst,
        Role::ComplianceOfficer,
        Role::ProductManager,
        Role::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Support => "support",
            Role::RiskAnalyst => "risk_analyst",
            Role::ComplianceOfficer => "compliance_officer",
            Role::ProductManager => "product_manager",
            Role::Administrator => "administrator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// What a staff member may do. Each route names exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Search customers and see their profile (masked contact, tier, status).
    ViewCustomers,
    /// Freeze a customer at once (fraud response).
    FreezeCustomers,
    /// Decide KYC reviews.
    ReviewKyc,
    /// Read the audit log.
    ReadAudit,
    /// Propose a sensitive action (maker).
    ProposeSensitive,
    /// Approve or reject someone else's proposal (checker).
    ApproveSensitive,
    /// Reconcile connector settlement reports against the ledger.
    Reconcile,
    /// Lift a sign-in lock-out (after checking it is the customer calling).
    UnlockCustomers,
    /// Review merchant applications (know-your-business) and approve or reject them.
    ReviewMerchants,
    /// Run and list merchants' daily settlements.
    SettleMerchants,
    /// Work risk cases (release, reject, escalate held payments), manage
    /// the blocklist, and draft, dry-run and activate risk rule sets.
    ManageRisk,
    /// Work the compliance queue (watch-list hits), load watch lists, run,
    /// review and export regulatory reports.
    ManageCompliance,
    /// See the notification dead-letter list and re-queue from it.
    ManageNotifications,
    /// Create marketing campaigns, preview their audience and send them.
    ManageCampaigns,
    /// See a customer's personal data in clear (name, contact, legal name)
    /// in the back office; without it staff see masked values.
    ViewPersonalData,
    /// Read the back office's queues overview and dashboards.
    ViewDashboards,
    /// Propose changes to the fee schedule and tier limits (maker); a
    /// checker with `approve_sensitive` approves them.
    ManageSettings,
    /// Work the customer support queue: read tickets (the customer's own
    /// words, so each read is on the customer's access log), reply, resolve.
    HandleSupport,
}

impl Permission {
    pub const ALL: [Permission; 18] = [
        Permission::ViewCustomers,
        Permission::FreezeCustomers,
        Permission::ReviewKyc,
        Permission::ReadAudit,
        Permission::ProposeSensitive,
        Permission::ApproveSensitive,
        Permission::Reconcile,
        Permission::UnlockCustomers,
        Permission::ReviewMerchants,
        Permission::SettleMerchants,
        Permission::ManageRisk,
        Permission::ManageCompliance,
        Permission::ManageNotifications,
        Permission::ManageCampaigns,
        Permission::ViewPersonalData,
        Permission::ViewDashboards,
        Permission::ManageSettings,
        Permission::HandleSupport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewCustomers => "view_customers",
            Permission::FreezeCustomers => "freeze_customers",
            Permission::ReviewKyc => "review_kyc",
            Permission::ReadAudit => "read_audit",
            Permission::ProposeSensitive => "propose_sensitive",
            Permission::ApproveSensitive => "approve_sensitive",
            Permission::Reconcile => "reconcile",
            Permission::UnlockCustomers => "unlock_customers",
            Permission::ReviewMerchants => "review_merchants",
            Permission::SettleMerchants => "settle_merchants",
            Permission::ManageRisk => "manage_risk",
            Permission::ManageCompliance => "manage_compliance",
            Permission::ManageNotifications => "manage_notifications",
            Permission::ManageCampaigns => "manage_campaigns",
            Permission::ViewPersonalData => "view_personal_data",
            Permission::ViewDashboards => "view_dashboards",
            Permission::ManageSettings => "manage_settings",
            Permission::HandleSupport => "handle_support",
        }
    }
}

/// The role matrix: least privilege, one table to review.
pub fn permits(role: Role, permission: Permission) -> bool {
    use Permission::*;
    use Role::*;
    matches!(
        (role, permission),
        (Support, ViewCustomers | ProposeSensitive | UnlockCustomers)
            | (
                RiskAnalyst,
                ViewCustomers
                    | FreezeCustomers
                    | ProposeSensitive
                    | ReadAudit
                    | UnlockCustomers
                    | ManageRisk
                    | ViewPersonalData
                    | ViewDashboards
            )
            | (
                ComplianceOfficer,
                ViewCustomers
                    | ReviewKyc
                    | ReadAudit
                    | ApproveSensitive
                    | Reconcile
                    | ReviewMerchants
                    | ManageCompliance
                    | ViewPersonalData
                    | ViewDashboards
            )
            | (
                ProductManager,
                ProposeSensitive | ManageCampaigns | ViewDashboards | ManageSettings
            )
            | (
                Administrator,
                ViewCustomers
                    | FreezeCustomers
                    | ReadAudit
                    | ApproveSensitive
                    | Reconcile
                    | UnlockCustomers
                    | SettleMerchants
                    | ManageNotifications
                    | ViewDashboards
            )
            | (Support, HandleSupport)
    )
}

/// A signed-in staff member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffInfo {
    pub staff_id: String,
    pub username: String,
    pub roles: Vec<Role>,
    pub session_id: String,
}

impl StaffInfo {
    pub fn may(&self, permission: Permission) -> bool {
        self.roles.iter().any(|r| permits(*r, permission))
    }

    pub fn require(&self, permission: Permission) -> Result<(), IdentityError> {
        if self.may(permission) {
            Ok(())
        } else {
            Err(IdentityError::Forbidden(permission.as_str()))
        }
    }

    pub fn actor(&self) -> String {
        format!("staff:{}", self.username)
    }
}

/// What `create_staff` hands over once: the initial password and the
/// authenticator seed.
#[derive(Debug)]
pub struct NewStaff {
    pub staff_id: String,
    pub password: Secret<String>,
    pub totp_base32: Secret<String>,
    pub otpauth_url: Secret<String>,
}

/// Sensitive actions that need a second staff member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveAction {
    /// Unfreeze a customer frozen for fraud.
    Unfreeze,
    /// A manual balance adjustment (credit or debit of a wallet).
    AdjustBalance,
    /// Raise a customer's limits above their tier.
    OverrideLimit,
    /// Send a marketing campaign (the subject is the campaign id).
    SendCampaign,
    /// A new version of a runtime settings document (fee schedule, tier
    /// limits); the subject names the kind.
    ChangeSettings,
}

impl SensitiveAction {
    pub fn as_str(self) -> &'static str {
        match self {
            SensitiveAction::Unfreeze => "unfreeze",
            SensitiveAction::AdjustBalance => "adjust_balance",
            SensitiveAction::OverrideLimit => "override_limit",
            SensitiveAction::SendCampaign => "send_campaign",
            SensitiveAction::ChangeSettings => "change_settings",
        }
    }

    pub fn parse(text: &str) -> Option<SensitiveAction> {
        [
            SensitiveAction::Unfreeze,
            SensitiveAction::AdjustBalance,
            SensitiveAction::OverrideLimit,
            SensitiveAction::SendCampaign,
            SensitiveAction::ChangeSettings,
        ]
        .into_iter()
        .find(|a| a.as_str() == text)
    }
}

/// A proposal waiting for (or past) its second pair of eyes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub id: String,
    pub action: SensitiveAction,
    pub subject: String,
    /// Action parameters as JSON text (e.g. amount and direction).
    pub params: String,
    pub reason: String,
    pub maker: String,
    pub state: String,
    pub checker: Option<String>,
    pub result: Option<String>,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

impl Identity {
    /// A staff action (or a refusal) in the audit log.
    fn staff_audit(
        &self,
        db: &mut dyn Sql,
        actor: &str,
        (action, subject): (&str, Option<&str>),
        context: &Context,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), IdentityError> {
        coffer_audit::append(
            db,
            &Entry {
                at: self.now(),
                actor,
                action,
                subject,
                ip: &context.ip,
                outcome,
                detail,
            },
        )?;
        Ok(())
    }

    /// Creates a staff member (an operator's command, not an API route).
    pub fn create_staff(
        &self,
        username: &str,
        display_name: &str,
        roles: &[Role],
        context: &Context,
    ) -> Result<NewStaff, IdentityError> {
        let valid = (3..=40).contains(&username.len())
            && username
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if !valid {
            return Err(IdentityError::invalid(
                "username",
                "3 to 40 characters: a-z, 0-9, '.', '_'",
            ));
        }
        if roles.is_empty() {
            return Err(IdentityError::invalid("roles", "at least one role"));
        }
        let password = Secret::new(random_password());
        let password_hash = self
            .passwords
            .hash(&password)
            .map_err(IdentityError::Internal)?;
        let mut seed = [0u8; 20];
        rand::rng().fill_bytes(&mut seed);
        let base32 = match totp_rs::Secret::Raw(seed.to_vec()).to_encoded() {
            totp_rs::Secret::Encoded(text) => text,
            totp_rs::Secret::Raw(_) => return Err(IdentityError::Internal("base32".into())),
        };
        let seed_enc = self.vault.encrypt(STAFF_TOTP_CONTEXT, &seed)?;
        let staff_id = format!("stf_{}", random_hex(6));
        let roles_text: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let inserted = db.execute(
                "INSERT INTO staff (id, username, display_name, password_hash, totp_enc, totp_last_step, roles, status, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, 'active', $7) ON CONFLICT DO NOTHING",
                sql_params![
                    staff_id.as_str(),
                    username,
                    display_name,
                    password_hash,
                    seed_enc,
                    roles_text.join(" "),
                    now
                ],
            )?;
            if inserted != 1 {
                return Err(IdentityError::Conflict("this username is taken"));
            }
            self.staff_audit(db, "system", ("staff_created", Some(&format!("staff:{username}"))), context, Outcome::Ok, &roles_text.join(" "))
        })?;
        Ok(NewStaff {
            staff_id,
            password,
            otpauth_url: Secret::new(format!(
                "otpauth://totp/Coffer%20staff:{username}?secret={base32}&issuer=Coffer%20staff&period={STEP_SECONDS}"
            )),
            totp_base32: Secret::new(base32),
        })
    }

    /// Password and authenticator code, always; throttled like customers.
    pub fn staff_sign_in(
        &self,
        username: &str,
        password: &Secret<String>,
        code: &Secret<String>,
        context: &Context,
    ) -> Result<(StaffInfo, Secret<String>), IdentityError> {
        let now = self.now();
        let subjects = [format!("staff:{username}"), format!("ip:{}", context.ip)];
        crate::throttle::check(&self.sql, &subjects, now)?;
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT id, password_hash, totp_enc, totp_last_step, roles, status FROM staff WHERE username = $1",
                sql_params![username],
            )
        })?;
        let verified = match &row {
            Some(row) => {
                self.passwords.verify(&row.text(1)?, password)
                    && row.text(5)? == "active"
                    && self.staff_code_ok(row, code.expose())?
            }
            None => {
                self.passwords.verify_nothing(password);
                false
            }
        };
        let actor = format!("staff:{username}");
        let Some(row) = row.filter(|_| verified) else {
            self.sql.transaction(|db| -> Result<(), IdentityError> {
                crate::throttle::fail(db, &self.policy, &subjects, now)?;
                self.staff_audit(
                    db,
                    &actor,
                    ("staff_sign_in_failed", None),
                    context,
                    Outcome::Refused,
                    "",
                )
            })?;
            return Err(IdentityError::InvalidCredentials);
        };
        let staff_id = row.text(0)?;
        let roles: Vec<Role> = row
            .text(4)?
            .split_whitespace()
            .filter_map(Role::parse)
            .collect();
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("{STAFF_TOKEN_PREFIX}{}", hex::encode(secret));
        let session_id = format!("sss_{}", random_hex(8));
        let absolute = now + STAFF_ABSOLUTE_SECONDS * NANOS_PER_SECOND;
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            crate::throttle::clear(db, &subjects[0])?;
            db.execute(
                "INSERT INTO staff_sessions (id, staff_id, token_hash, ip, created_at, idle_expires_at, absolute_expires_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
                sql_params![
                    session_id.as_str(),
                    staff_id.as_str(),
                    token_hash(&token),
                    context.ip.as_str(),
                    now,
                    now + STAFF_IDLE_SECONDS * NANOS_PER_SECOND,
                    absolute
                ],
            )?;
            self.staff_audit(db, &actor, ("staff_signed_in", None), context, Outcome::Ok, "")
        })?;
        Ok((
            StaffInfo {
                staff_id,
                username: username.to_string(),
                roles,
                session_id,
            },
            Secret::new(token),
        ))
    }

    /// The TOTP check for staff, using up the time step.
    fn staff_code_ok(
        &self,
        row: &coffer_store::sql::Row,
        code: &str,
    ) -> Result<bool, IdentityError> {
        let seed = self.vault.decrypt(STAFF_TOTP_CONTEXT, &row.bytes(2)?)?;
        let generator = totp(seed.expose())?;
        let step = self.now() / NANOS_PER_SECOND / STEP_SECONDS;
        let last = row.int(3)?;
        for candidate in [step - 1, step, step + 1] {
            let Ok(time) = u64::try_from(candidate * STEP_SECONDS) else {
                continue;
            };
            if candidate > last && same(&generator.generate(time), code.trim()) {
                let used = self.sql.run(|db| {
                    db.execute(
                        "UPDATE staff SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2",
                        sql_params![row.text(0)?.as_str(), candidate],
                    )
                })?;
                return Ok(used == 1);
            }
        }
        Ok(false)
    }

    pub fn authenticate_staff(&self, token: &Secret<String>) -> Result<StaffInfo, IdentityError> {
        let token = token.expose();
        if !token.starts_with(STAFF_TOKEN_PREFIX) || token.len() != STAFF_TOKEN_PREFIX.len() + 64 {
            return Err(IdentityError::Unauthenticated);
        }
        let now = self.now();
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT s.id, s.staff_id, s.idle_expires_at, s.absolute_expires_at, s.revoked_at, t.username, t.roles, t.status \
                     FROM staff_sessions s JOIN staff t ON t.id = s.staff_id WHERE s.token_hash = $1",
                    sql_params![token_hash(token)],
                )
            })?
            .ok_or(IdentityError::Unauthenticated)?;
        if row.opt_int(4)?.is_some()
            || row.int(2)? <= now
            || row.int(3)? <= now
            || row.text(7)? != "active"
        {
            return Err(IdentityError::Unauthenticated);
        }
        let idle = (now + STAFF_IDLE_SECONDS * NANOS_PER_SECOND).min(row.int(3)?);
        let session_id = row.text(0)?;
        self.sql.run(|db| {
            db.execute(
                "UPDATE staff_sessions SET idle_expires_at = $2 WHERE id = $1",
                sql_params![session_id.as_str(), idle],
            )
        })?;
        Ok(StaffInfo {
            staff_id: row.text(1)?,
            username: row.text(5)?,
            roles: row
                .text(6)?
                .split_whitespace()
                .filter_map(Role::parse)
                .collect(),
            session_id,
        })
    }

    /// A customer's profile for staff; the look itself is audited.
    pub fn staff_view_customer(
        &self,
        staff: &StaffInfo,
        customer_id: &str,
        context: &Context,
    ) -> Result<CustomerView, IdentityError> {
        staff.require(Permission::ViewCustomers)?;
        let view = self.customer(customer_id)?;
        self.sql.transaction(|db| {
            self.staff_audit(
                db,
                &staff.actor(),
                ("customer_viewed", Some(customer_id)),
                context,
                Outcome::Ok,
                "",
            )
        })?;
        Ok(view)
    }

    /// Finds a customer by phone or e-mail (through the blind index).
    pub fn staff_find_customer(
        &self,
        staff: &StaffInfo,
        contact: &str,
        context: &Context,
    ) -> Result<Option<String>, IdentityError> {
        staff.require(Permission::ViewCustomers)?;
        let contact = Contact::parse(contact)
            .ok_or_else(|| IdentityError::invalid("contact", "a phone number (+86…) or e-mail"))?;
        let index = self.vault.blind_index("contact", contact.as_str());
        let found = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id FROM customers WHERE contact_index = $1",
                    sql_params![index.as_str()],
                )
            })?
            .map(|r| r.text(0))
            .transpose()?;
        self.sql.transaction(|db| {
            self.staff_audit(
                db,
                &staff.actor(),
                ("customer_searched", found.as_deref()),
                context,
                Outcome::Ok,
                &contact.masked(),
            )
        })?;
        Ok(found)
    }

    /// Freezes a customer at once: no sign-in, every session ended.
    pub fn freeze_customer(
        &self,
        staff: &StaffInfo,
        customer_id: &str,
        reason: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        staff.require(Permission::FreezeCustomers)?;
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            if !self.freeze_within(db, &staff.actor(), customer_id, reason, context)? {
                return Err(IdentityError::NotFound("active customer"));
            }
            Ok(())
        })
    }

    /// Freezes a customer inside the caller's transaction on a decision the
    /// system made (risk's block, or the customer's own "that was not me"),
    /// audited with `actor`; a customer already frozen stays so (no error).
    pub fn freeze_in(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<bool, IdentityError> {
        let context = Context {
            ip: String::new(),
            device: String::new(),
        };
        self.freeze_within(db, actor, customer_id, reason, &context)
    }

    /// Freezes a customer inside the caller's transaction (a compliance
    /// officer confirming a sanctions hit freezes in the transaction that
    /// confirms it); `false` when there is no active customer to freeze.
    /// The caller has checked the actor's permission.
    pub fn freeze_within(
        &self,
        db: &mut dyn Sql,
        actor: &str,
        customer_id: &str,
        reason: &str,
        context: &Context,
    ) -> Result<bool, IdentityError> {
        let now = self.now();
        let frozen = db.execute(
            "UPDATE customers SET status = 'frozen', updated_at = $2 WHERE id = $1 AND status = 'active'",
            sql_params![customer_id, now],
        )?;
        if frozen != 1 {
            return Ok(false);
        }
        db.execute(
            "UPDATE sessions SET revoked_at = $2 WHERE customer_id = $1 AND revoked_at IS NULL",
            sql_params![customer_id, now],
        )?;
        self.staff_audit(
            db,
            actor,
            ("customer_frozen", Some(customer_id)),
            context,
            Outcome::Ok,
            reason,
        )?;
        self.security_alert(
            db,
            customer_id,
            "account_frozen",
            "Your Coffer wallet has been frozen for your protection. Please contact the bank. \
             为保护您的资金安全，您的 Coffer 钱包已被冻结，请联系银行。",
        )?;
        Ok(true)
    }

    /// Queues a security alert (always sent, whatever the customer's
    /// preferences) inside the caller's transaction.
    pub fn alert_customer(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        template: &'static str,
        text: &str,
    ) -> Result<(), IdentityError> {
        self.security_alert(db, customer_id, template, text)
    }

    /// Lifts a customer's sign-in lock-out (the customer called the bank and
    /// support checked who they are). The throttle forgets the failures; the
    /// customer is told, so an unlock they did not ask for is noticed.
    pub fn unlock_customer(
        &self,
        staff: &StaffInfo,
        customer_id: &str,
        reason: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        staff.require(Permission::UnlockCustomers)?;
        if reason.trim().is_empty() {
            return Err(IdentityError::invalid("reason", "say why"));
        }
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let row = db
                .query_opt(
                    "SELECT contact_index FROM customers WHERE id = $1",
                    sql_params![customer_id],
                )?
                .ok_or(IdentityError::NotFound("customer"))?;
            crate::throttle::clear(db, &format!("contact:{}", row.text(0)?))?;
            self.staff_audit(db, &staff.actor(), ("customer_unlocked", Some(customer_id)), context, Outcome::Ok, reason)?;
            self.security_alert(
                db,
                customer_id,
                "account_unlocked",
                "The bank lifted the sign-in lock on your Coffer wallet. If you did not ask for this, call the bank. \
                 银行已解除您 Coffer 钱包的登录锁定。如非本人申请，请致电银行。",
            )
        })
    }

    /// Proposes a sensitive action (maker).
    pub fn propose(
        &self,
        staff: &StaffInfo,
        action: SensitiveAction,
        subject: &str,
        params: &str,
        reason: &str,
        context: &Context,
    ) -> Result<String, IdentityError> {
        staff.require(match action {
            SensitiveAction::ChangeSettings => Permission::ManageSettings,
            _ => Permission::ProposeSensitive,
        })?;
        if reason.trim().is_empty() {
            return Err(IdentityError::invalid("reason", "say why"));
        }
        let id = format!("apr_{}", random_hex(8));
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            db.execute(
                "INSERT INTO approvals (id, action, subject, params, reason, maker, state, created_at, checker, decided_at, result) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, NULL, NULL, NULL)",
                sql_params![id.as_str(), action.as_str(), subject, params, reason, staff.username.as_str(), now],
            )?;
            self.staff_audit(db, &staff.actor(), ("approval_proposed", Some(&id)), context, Outcome::Ok, &format!("{} {subject}", action.as_str()))
        })?;
        Ok(id)
    }

    pub fn approval(&self, id: &str) -> Result<Approval, IdentityError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id, action, subject, params, reason, maker, state, checker, result FROM approvals WHERE id = $1",
                    sql_params![id],
                )
            })?
            .ok_or(IdentityError::NotFound("approval"))?;
        Ok(Approval {
            id: row.text(0)?,
            action: SensitiveAction::parse(&row.text(1)?)
                .ok_or_else(|| IdentityError::Internal("unknown action".into()))?,
            subject: row.text(2)?,
            params: row.text(3)?,
            reason: row.text(4)?,
            maker: row.text(5)?,
            state: row.text(6)?,
            checker: row.opt_text(7)?,
            result: row.opt_text(8)?,
        })
    }

    pub fn pending_approvals(&self, staff: &StaffInfo) -> Result<Vec<Approval>, IdentityError> {
        if !staff.may(Permission::ApproveSensitive) && !staff.may(Permission::ProposeSensitive) {
            return Err(IdentityError::Forbidden(
                Permission::ApproveSensitive.as_str(),
            ));
        }
        let ids = self.sql.run(|db| {
            db.query("SELECT id FROM approvals WHERE state = 'pending' ORDER BY created_at, id LIMIT 200", &[])
        })?;
        ids.iter().map(|r| self.approval(&r.text(0)?)).collect()
    }

    /// The checker's decision. The maker can never check their own proposal.
    /// On approval the caller executes the action and reports with
    /// `finish_approval`; approving returns the approval to execute.
    pub fn decide_approval(
        &self,
        staff: &StaffInfo,
        id: &str,
        approve: bool,
        context: &Context,
    ) -> Result<Approval, IdentityError> {
        staff.require(Permission::ApproveSensitive)?;
        let approval = self.approval(id)?;
        if approval.maker == staff.username {
            return Err(IdentityError::Forbidden("approve_own_proposal"));
        }
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let decided = db.execute(
                "UPDATE approvals SET state = $2, checker = $3, decided_at = $4 WHERE id = $1 AND state = 'pending'",
                sql_params![id, if approve { "approved" } else { "rejected" }, staff.username.as_str(), now],
            )?;
            if decided != 1 {
                return Err(IdentityError::Conflict("this approval was already decided"));
            }
            self.staff_audit(db, &staff.actor(), (if approve { "approval_granted" } else { "approval_rejected" }, Some(id)), context, Outcome::Ok, approval.action.as_str())
        })?;
        self.approval(id)
    }

    /// Records how the approved action went.
    pub fn finish_approval(&self, id: &str, result: &str, ok: bool) -> Result<(), IdentityError> {
        self.sql.run(|db| {
            db.execute(
                "UPDATE approvals SET state = $2, result = $3 WHERE id = $1 AND state = 'approved'",
                sql_params![id, if ok { "executed" } else { "failed" }, result],
            )
        })?;
        Ok(())
    }

    /// Unfreezing, as the executed half of an approved proposal.
    pub fn unfreeze_customer(
        &self,
        approval: &Approval,
        context: &Context,
    ) -> Result<(), IdentityError> {
        if approval.action != SensitiveAction::Unfreeze || approval.state != "approved" {
            return Err(IdentityError::Forbidden("unfreeze_without_approval"));
        }
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            db.execute(
                "UPDATE customers SET status = 'active', updated_at = $2 WHERE id = $1 AND status = 'frozen'",
                sql_params![approval.subject.as_str(), now],
            )?;
            let checker = format!("staff:{}", approval.checker.clone().unwrap_or_default());
            self.staff_audit(db, &checker, ("customer_unfrozen", Some(&approval.subject)), context, Outcome::Ok, &approval.id)
        })
    }

    /// Applies an approved limit override: `approval.params` is a JSON object
    /// with any of `balance_cap`, `per_payment`, `daily`, `monthly` (minor
    /// units, ≥ 0); fields not named keep the customer's tier limit. Payments
    /// read it through `limits_for`.
    pub fn apply_limit_override(
        &self,
        approval: &Approval,
        context: &Context,
    ) -> Result<(), IdentityError> {
        if approval.action != SensitiveAction::OverrideLimit || approval.state != "approved" {
            return Err(IdentityError::Forbidden("override_without_approval"));
        }
        let fields = limit_override_fields(&approval.params)?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            db.execute(
                "DELETE FROM limit_overrides WHERE customer_id = $1",
                sql_params![approval.subject.as_str()],
            )?;
            db.execute(
                "INSERT INTO limit_overrides (customer_id, balance_cap, per_payment, daily, monthly, approval_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                sql_params![
                    approval.subject.as_str(),
                    fields[0],
                    fields[1],
                    fields[2],
                    fields[3],
                    approval.id.as_str(),
                    now
                ],
            )?;
            let checker = format!("staff:{}", approval.checker.clone().unwrap_or_default());
            self.staff_audit(db, &checker, ("limit_overridden", Some(&approval.subject)), context, Outcome::Ok, &approval.params)
        })
    }

    /// The limits a customer's payments are held to: their KYC tier's (as
    /// in force: `current_tiers`), with any approved override applied.
    pub fn limits_for(
        &self,
        customer_id: &str,
        tier: i64,
    ) -> Result<crate::TierLimits, IdentityError> {
        let mut limits = self.current_tiers()?.1.limits(tier);
        let row = self.sql.run(|db| {
            db.query_opt(
                "SELECT balance_cap, per_payment, daily, monthly FROM limit_overrides WHERE customer_id = $1",
                sql_params![customer_id],
            )
        })?;
        if let Some(row) = row {
            let field = |i: usize| -> Result<Option<i64>, IdentityError> { Ok(row.opt_int(i)?) };
            if let Some(v) = field(0)? {
                limits.balance_cap = v;
            }
            if let Some(v) = field(1)? {
                limits.per_payment = v;
            }
            if let Some(v) = field(2)? {
                limits.daily = v;
            }
            if let Some(v) = field(3)? {
                limits.monthly = v;
            }
        }
        Ok(limits)
    }

    /// The audit log, for staff who may read it; the reading is audited too.
    pub fn staff_audit_log(
        &self,
        staff: &StaffInfo,
        subject: Option<&str>,
        limit: usize,
        context: &Context,
    ) -> Result<Vec<Record>, IdentityError> {
        staff.require(Permission::ReadAudit)?;
        let records = self.sql.run(|db| {
            coffer_audit::entries(
                db,
                &Filter {
                    subject,
                    limit,
                    ..Filter::default()
                },
            )
            .map_err(|e| coffer_store::StoreError::Corrupt(e.to_string()))
        })?;
        self.sql.transaction(|db| {
            self.staff_audit(
                db,
                &staff.actor(),
                ("audit_read", subject),
                context,
                Outcome::Ok,
                "",
            )
        })?;
        Ok(records)
    }

    /// KYC decision by a staff member who may review.
    pub fn staff_decide_review(
        &self,
        staff: &StaffInfo,
        review_id: &str,
        approve: bool,
        note: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        staff.require(Permission::ReviewKyc)?;
        self.decide_review(review_id, &staff.actor(), approve, note, context)
    }
}

/// The fields of an `override_limit` proposal, in the order balance_cap,
/// per_payment, daily, monthly; at least one, each a whole number ≥ 0.
pub fn limit_override_fields(params: &str) -> Result<[Option<i64>; 4], IdentityError> {
    let value: serde_json::Value = serde_json::from_str(params)
        .map_err(|_| IdentityError::invalid("params", "a JSON object"))?;
    let object = value
        .as_object()
        .ok_or_else(|| IdentityError::invalid("params", "a JSON object"))?;
    const NAMES: [&str; 4] = ["balance_cap", "per_payment", "daily", "monthly"];
    if object.keys().any(|k| !NAMES.contains(&k.as_str())) {
        return Err(IdentityError::invalid(
            "params",
            "only balance_cap, per_payment, daily, monthly",
        ));
    }
    let mut fields = [None; 4];
    for (slot, name) in fields.iter_mut().zip(NAMES) {
        if let Some(v) = object.get(name) {
            *slot = Some(v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                IdentityError::invalid("params", "limits are whole minor units, 0 or more")
            })?);
        }
    }
    if fields.iter().all(Option::is_none) {
        return Err(IdentityError::invalid(
            "params",
            "name at least one of balance_cap, per_payment, daily, monthly",
        ));
    }
    Ok(fields)
}
