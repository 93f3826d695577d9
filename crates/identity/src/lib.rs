//! Customer identity: registration with a one-time code, passwords,
//! sessions, throttling and lock-out, profile and contact changes, password
//! change and reset.
//!
//! Everything here is synchronous and talks to the database through the
//! portable SQL layer, so it runs unchanged on SQLite and PostgreSQL; the
//! HTTP layer calls it from blocking tasks. Personal data (contact, name)
//! is stored encrypted by the vault and found through blind indexes.
//!
//! Nothing here tells a caller whether an account exists: registering a
//! taken number answers exactly like a new one (the owner gets a warning
//! instead of a code), and a failed sign-in says "invalid credentials"
//! whether the contact is unknown or the password wrong, after the same work.
//!
//! Every security event, failed sign-ins included, is appended to the audit
//! log (`coffer-audit`) in the same transaction as the change it records;
//! the old `security_events` table (migration 0003) is no longer written.

mod backoffice;
mod contact;
mod credentials;
mod error;
mod factors;
mod kyc;
mod new_device;
mod passkeys;
mod password;
mod profile;
mod screening;
mod session;
mod settings;
mod sign_in_risk;
mod staff;
mod throttle;

use std::sync::Arc;

use coffer_audit::{Entry, Outcome, ACTOR_ANONYMOUS, ACTOR_SYSTEM};
use coffer_core::{Clock, Secret};
use coffer_notify::{enqueue, Message};
use coffer_store::sql::{Sql, SqlStore};
use coffer_store::sql_params;
use coffer_vault::{EncryptedColumn, Vault};
use rand::{Rng, RngCore};

pub use backoffice::{
    mask_name, normalize_name, CustomerHit, CustomerRecord, CustomerSearch, KycIdentityView,
    KycReviewView, LimitOverrideView, QueueSummary, SearchPage, StaffSessionView, SEARCH_PAGE_MAX,
};
pub use contact::{Contact, ContactKind};
pub use credentials::{PasswordReset, PASSWORD_RESETS_PER_CONTACT_PER_HOUR_MAX};
pub use error::IdentityError;
pub use factors::{
    Challenge, Method, Operation, SignIn, TotpEnrollment, CHALLENGE_TTL_SECONDS, RECOVERY_CODES,
};
pub use kyc::{
    mask_id_number, mask_person_name, normalize_id, resident_id_check, IdType, IdentityProvider,
    KycOutcome, MaskedIdentity, ProviderError, ProviderVerdict, Review, SimulatedIdentityProvider,
    TierLimits, Tiers,
};
pub use passkeys::{
    passkey_change_operation, PasskeySettings, PasskeyView, OPERATION_PASSKEY_CHANGE,
    PASSKEYS_PER_CUSTOMER_MAX,
};
pub use password::{PasswordPolicy, Weakness, PASSWORD_LENGTH_MAX, PASSWORD_LENGTH_MIN};
pub use profile::{ContactChange, CONTACT_CHANGES_PER_HOUR_MAX, CONTACT_CHANGE_TTL_SECONDS};
pub use screening::{Party, PartyKind, Screening, ScreeningError, ScreeningSource, Standing};
pub use session::{NewSession, SessionInfo, SessionView};
pub use settings::{
    latest_setting, setting_proposal, tiers_from_json, tiers_to_json, SettingError, SettingVersion,
    TIER_LIMITS_SETTING,
};
pub use staff::{
    limit_override_fields, permits, Approval, NewStaff, Permission, Role, SensitiveAction,
    StaffInfo, STAFF_TOKEN_PREFIX,
};
pub use webauthn_rs::prelude as webauthn;

/// The terms a new customer accepts; a registration must name this version.
pub const TERMS_VERSION: &str = "2026-11";
pub const DISPLAY_NAME_LENGTH_MAX: usize = 64;
const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// Time limits and thresholds, from configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    pub code_ttl_seconds: i64,
    pub code_attempts_max: i64,
    pub registrations_per_contact_per_hour: i64,
    pub session_idle_seconds: i64,
    pub session_absolute_seconds: i64,
    /// Failed sign-ins for one contact before back-off starts.
    pub free_failures: i64,
    /// Failed sign-ins for one contact that lock it for `lock_seconds`.
    pub lock_after_failures: i64,
    pub lock_seconds: i64,
    /// Failed sign-ins from one IP address that block it for `lock_seconds`.
    pub ip_failures_max: i64,
    /// Limits per KYC tier, enforced by the payment layer.
    pub tiers: Tiers,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            code_ttl_seconds: 300,
            code_attempts_max: 5,
            registrations_per_contact_per_hour: 5,
            session_idle_seconds: 30 * 60,
            session_absolute_seconds: 12 * 60 * 60,
            free_failures: 3,
            lock_after_failures: 10,
            lock_seconds: 15 * 60,
            ip_failures_max: 100,
            tiers: Tiers::default(),
        }
    }
}

/// Where a request comes from: recorded with sessions and in the audit log.
#[derive(Debug, Clone)]
pub struct Context {
    pub ip: String,
    pub device: String,
}

/// A customer as the customer (and support staff) see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerView {
    pub id: String,
    pub display_name: Secret<String>,
    pub contact_kind: ContactKind,
    pub contact_masked: String,
    pub tier: i64,
    pub status: String,
    pub created_at: i64,
}

/// A registration waiting for its code.
#[derive(Debug, Clone)]
pub struct Started {
    pub registration_id: String,
    pub expires_at: i64,
    pub sent_to: String,
}

pub struct Identity {
    sql: Arc<SqlStore>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    policy: Policy,
    passwords: PasswordPolicy,
    webauthn: Option<webauthn_rs::Webauthn>,
    /// Watch-list screening of the legal name at KYC (compliance).
    screening: Option<Arc<dyn Screening>>,
    /// The risk engine every sign-in passes (`sign_in_risk.rs`).
    risk: Option<Arc<coffer_risk::Risk>>,
}

pub(crate) const CONTACT_CONTEXT: &str = "customer.contact";
const NAME_CONTEXT: &str = "customer.display_name";

/// Every column where identity keeps vault ciphertexts, for re-encryption
/// after a key rotation (a test checks the schema has no other).
pub const ENCRYPTED_COLUMNS: [EncryptedColumn; 9] = [
    EncryptedColumn {
        table: "customers",
        key: "id",
        column: "contact_enc",
        context: CONTACT_CONTEXT,
    },
    EncryptedColumn {
        table: "customers",
        key: "id",
        column: "display_name_enc",
        context: NAME_CONTEXT,
    },
    EncryptedColumn {
        table: "registrations",
        key: "id",
        column: "contact_enc",
        context: CONTACT_CONTEXT,
    },
    EncryptedColumn {
        table: "contact_changes",
        key: "id",
        column: "new_contact_enc",
        context: CONTACT_CONTEXT,
    },
    EncryptedColumn {
        table: "totp_factors",
        key: "customer_id",
        column: "secret_enc",
        context: factors::TOTP_CONTEXT,
    },
    EncryptedColumn {
        table: "staff",
        key: "id",
        column: "totp_enc",
        context: staff::STAFF_TOTP_CONTEXT,
    },
    EncryptedColumn {
        table: "kyc_identities",
        key: "customer_id",
        column: "id_number_enc",
        context: kyc::ID_NUMBER_CONTEXT,
    },
    EncryptedColumn {
        table: "kyc_identities",
        key: "customer_id",
        column: "full_name_enc",
        context: kyc::FULL_NAME_CONTEXT,
    },
    EncryptedColumn {
        table: "kyc_reviews",
        key: "id",
        column: "evidence_enc",
        context: kyc::EVIDENCE_CONTEXT,
    },
];

/// The customer's contact as an alert's SMS or e-mail destination.
pub(crate) fn alert_contact(contact: &Contact) -> coffer_notify::alerts::Contact {
    coffer_notify::alerts::Contact {
        channel: contact.kind().channel(),
        address: Secret::new(contact.as_str().to_string()),
        masked: contact.masked(),
    }
}

/// Splits an "English 中文" text at its first CJK character.
pub(crate) fn split_bilingual(text: &str) -> (String, String) {
    match text
        .char_indices()
        .find(|(_, c)| ('\u{3000}'..='\u{9fff}').contains(c))
    {
        Some((i, _)) => (text[..i].trim().to_string(), text[i..].trim().to_string()),
        None => (text.to_string(), text.to_string()),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// A display name as registration and profile edits accept it: trimmed,
/// 1 to `DISPLAY_NAME_LENGTH_MAX` characters, no control characters.
fn parse_display_name(text: &str) -> Result<&str, IdentityError> {
    let name = text.trim();
    let length = name.chars().count();
    if length == 0 || length > DISPLAY_NAME_LENGTH_MAX || name.chars().any(char::is_control) {
        return Err(IdentityError::invalid(
            "display_name",
            format!("a name of 1 to {DISPLAY_NAME_LENGTH_MAX} characters"),
        ));
    }
    Ok(name)
}

/// A random six-digit one-time code.
fn one_time_code() -> String {
    format!("{:06}", rand::rng().random_range(0..1_000_000u32))
}

/// Equal-time comparison of two hashes.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Identity {
    pub fn new(
        sql: Arc<SqlStore>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        policy: Policy,
        passwords: PasswordPolicy,
    ) -> Identity {
        Identity {
            sql,
            vault,
            clock,
            policy,
            passwords,
            webauthn: None,
            screening: None,
            risk: None,
        }
    }

    /// Evaluates every sign-in with the risk engine before its session exists.
    pub fn with_risk(mut self, risk: Arc<coffer_risk::Risk>) -> Identity {
        self.risk = Some(risk);
        self
    }

    /// Screens every legal name given at identity verification.
    pub fn with_screening(mut self, screening: Arc<dyn Screening>) -> Identity {
        self.screening = Some(screening);
        self
    }

    /// The screening hook, when one is wired in.
    pub fn screening(&self) -> Option<&Arc<dyn Screening>> {
        self.screening.as_ref()
    }

    /// Turns passkeys on for this relying party (the bank's domain).
    pub fn with_passkeys(mut self, settings: &PasskeySettings) -> Result<Identity, IdentityError> {
        self.webauthn = Some(passkeys::build(settings)?);
        Ok(self)
    }

    fn now(&self) -> i64 {
        self.clock.now().as_nanos()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Step one: sends a code to the contact (or, if it already has a
    /// wallet, a warning to its owner) and returns the same answer either way.
    pub fn start_registration(
        &self,
        contact: &str,
        context: &Context,
    ) -> Result<Started, IdentityError> {
        let contact = Contact::parse(contact).ok_or_else(|| {
            IdentityError::invalid(
                "contact",
                "expected a mobile number in international form (+8613800138000) or an e-mail address",
            )
        })?;
        let now = self.now();
        let index = self.vault.blind_index("contact", contact.as_str());
        let registration_id = format!("reg_{}", random_hex(12));
        let code = one_time_code();
        let expires_at = now + self.policy.code_ttl_seconds * NANOS_PER_SECOND;
        let contact_enc = self.vault.encrypt_text(CONTACT_CONTEXT, contact.as_str())?;
        let recipient = Secret::new(contact.as_str().to_string());
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let recent = db
                .query_one(
                    "SELECT COUNT(*) FROM registrations WHERE contact_index = $1 AND created_at > $2",
                    sql_params![index.as_str(), now - 3_600 * NANOS_PER_SECOND],
                )?
                .int(0)?;
            if recent >= self.policy.registrations_per_contact_per_hour {
                return Err(IdentityError::Throttled {
                    retry_after_seconds: 3_600,
                });
            }
            let existing = db
                .query_opt(
                    "SELECT id FROM customers WHERE contact_index = $1",
                    sql_params![index.as_str()],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            let (code_hash, template, body) = match &existing {
                None => (
                    self.vault
                        .keyed_hash("registration", &format!("{registration_id}:{code}")),
                    "registration_code",
                    format!(
                        "Your Coffer verification code is {code}. It expires in {} minutes. Never share it. \
                         您的 Coffer 验证码是 {code}，{} 分钟内有效，请勿告诉他人。",
                        self.policy.code_ttl_seconds / 60,
                        self.policy.code_ttl_seconds / 60
                    ),
                ),
                // Not a hash of anything: this registration can never complete.
                Some(_) => (
                    "existing-customer".to_string(),
                    "registration_existing",
                    "Someone tried to open a Coffer wallet with your number or address. You already have one: \
                     sign in instead. If it was not you, you can ignore this. \
                     有人尝试用您的号码注册 Coffer 钱包。您已有钱包，请直接登录；如非本人操作，请忽略。"
                        .to_string(),
                ),
            };
            db.execute(
                "INSERT INTO registrations (id, contact_index, contact_enc, contact_kind, code_hash, attempts, expires_at, completed_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, $7)",
                sql_params![
                    registration_id.as_str(),
                    index.as_str(),
                    contact_enc.clone(),
                    contact.kind().as_str(),
                    code_hash,
                    expires_at,
                    now
                ],
            )?;
            enqueue(
                db,
                &self.vault,
                &Message {
                    channel: contact.kind().channel(),
                    recipient: recipient.clone(),
                    recipient_masked: contact.masked(),
                    customer_id: existing.as_deref(),
                    template,
                    subject: "Coffer".into(),
                    body: Secret::new(body),
                },
                now,
            )?;
            // Whoever typed the contact is not (yet) anyone: anonymous, even
            // when the contact belongs to a customer, who is the subject.
            self.append(
                db,
                &Entry {
                    at: now,
                    actor: ACTOR_ANONYMOUS,
                    action: "registration_started",
                    subject: existing.as_deref(),
                    ip: &context.ip,
                    outcome: Outcome::Ok,
                    detail: &registration_id,
                },
            )?;
            Ok(())
        })?;
        tracing::info!(registration = %registration_id, to = %contact.masked(), "registration started");
        Ok(Started {
            registration_id,
            expires_at,
            sent_to: contact.masked(),
        })
    }

    /// Step two: the code, a password, a name and the terms; creates the
    /// customer and signs them in.
    pub fn complete_registration(
        &self,
        registration_id: &str,
        code: &Secret<String>,
        password: &Secret<String>,
        display_name: &str,
        terms_version: &str,
        context: &Context,
    ) -> Result<(CustomerView, NewSession), IdentityError> {
        let display_name = parse_display_name(display_name)?;
        if terms_version != TERMS_VERSION {
            return Err(IdentityError::invalid(
                "accept_terms",
                format!("accept the current terms, version {TERMS_VERSION}"),
            ));
        }
        let now = self.now();
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT contact_enc, contact_kind, code_hash, attempts, expires_at, completed_at FROM registrations WHERE id = $1",
                    sql_params![registration_id],
                )
            })?
            .ok_or(IdentityError::CodeInvalid)?;
        let usable = row.opt_int(5)?.is_none()
            && row.int(4)? > now
            && row.int(3)? < self.policy.code_attempts_max;
        let expected = self.vault.keyed_hash(
            "registration",
            &format!("{registration_id}:{}", code.expose()),
        );
        if !usable || !same(&expected, &row.text(2)?) {
            self.sql.run(|db| {
                db.execute(
                    "UPDATE registrations SET attempts = attempts + 1 WHERE id = $1",
                    sql_params![registration_id],
                )
            })?;
            return Err(IdentityError::CodeInvalid);
        }
        let contact_text = self.vault.decrypt_text(CONTACT_CONTEXT, &row.bytes(0)?)?;
        let contact = Contact::parse(contact_text.expose())
            .ok_or_else(|| IdentityError::Internal("stored contact does not parse".into()))?;
        self.passwords
            .check(password, contact.as_str())
            .map_err(IdentityError::WeakPassword)?;
        let password_hash = self
            .passwords
            .hash(password)
            .map_err(IdentityError::Internal)?;
        let customer_id = format!("cus_{}", random_hex(8));
        let index = self.vault.blind_index("contact", contact.as_str());
        let contact_enc = self.vault.encrypt_text(CONTACT_CONTEXT, contact.as_str())?;
        let name_enc = self.vault.encrypt_text(NAME_CONTEXT, display_name)?;
        let session = self.sql.transaction(|db| -> Result<Option<NewSession>, IdentityError> {
            let claimed = db.execute(
                "UPDATE registrations SET completed_at = $2 WHERE id = $1 AND completed_at IS NULL",
                sql_params![registration_id, now],
            )?;
            let inserted = db.execute(
                "INSERT INTO customers (id, contact_kind, contact_index, contact_enc, contact_masked, display_name_enc, \
                 password_hash, tier, status, terms_version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 'active', $8, $9, $9) ON CONFLICT DO NOTHING",
                sql_params![
                    customer_id.as_str(),
                    contact.kind().as_str(),
                    index.as_str(),
                    contact_enc,
                    contact.masked(),
                    name_enc,
                    password_hash,
                    TERMS_VERSION,
                    now
                ],
            )?;
            if claimed != 1 || inserted != 1 {
                // Completed meanwhile, or the contact registered by another flow.
                return Err(IdentityError::CodeInvalid);
            }
            self.index_name(db, &customer_id, backoffice::DISPLAY_NAME_SOURCE, display_name)?;
            self.event(db, Some(&customer_id), "registered", context, "")?;
            // The first sign-in: the code just verified is its second
            // factor, so only a block changes anything.
            if self.sign_in_risk(db, &customer_id, None, context)? == sign_in_risk::Verdict::Blocked {
                return Ok(None);
            }
            session::create(db, &self.policy, &customer_id, context, now).map(Some)
        })?;
        let Some(session) = session else {
            return Err(IdentityError::Forbidden(
                "this wallet was frozen for your protection; contact the bank",
            ));
        };
        tracing::info!(customer = %customer_id, "customer registered");
        Ok((self.customer(&customer_id)?, session))
    }

    /// Signs in with contact and password. Unknown contact, wrong password
    /// and locked account look the same from outside, and cost the same.
    pub fn login(
        &self,
        contact: &str,
        password: &Secret<String>,
        context: &Context,
    ) -> Result<SignIn, IdentityError> {
        let contact = Contact::parse(contact).ok_or(IdentityError::InvalidCredentials)?;
        let now = self.now();
        let index = self.vault.blind_index("contact", contact.as_str());
        let subjects = [format!("contact:{index}"), format!("ip:{}", context.ip)];
        throttle::check(&self.sql, &subjects, now)?;
        let customer = self.sql.run(|db| {
            db.query_opt(
                "SELECT id, password_hash, status FROM customers WHERE contact_index = $1",
                sql_params![index.as_str()],
            )
        })?;
        let verified = match &customer {
            Some(row) => self.passwords.verify(&row.text(1)?, password) && row.text(2)? == "active",
            None => {
                self.passwords.verify_nothing(password);
                false
            }
        };
        let customer_id = customer.map(|r| r.text(0)).transpose()?;
        if !verified {
            // Audited with the customer as subject when the contact is one
            // (never the contact itself, nor anything typed as a password).
            let locked = self.sql.transaction(|db| -> Result<bool, IdentityError> {
                let locked = throttle::fail(db, &self.policy, &subjects, now)?;
                self.append(
                    db,
                    &Entry {
                        at: now,
                        actor: ACTOR_ANONYMOUS,
                        action: "sign_in_failed",
                        subject: customer_id.as_deref(),
                        ip: &context.ip,
                        outcome: Outcome::Refused,
                        detail: "password",
                    },
                )?;
                Ok(locked)
            })?;
            if let (Some(customer_id), true) = (&customer_id, locked) {
                self.alert_locked(customer_id, &contact, context, now)?;
            }
            return Err(IdentityError::InvalidCredentials);
        }
        let customer_id = customer_id.ok_or(IdentityError::InvalidCredentials)?;
        let second_factor = self.has_totp(&customer_id)?;
        let signed_in = self
            .sql
            .transaction(|db| -> Result<Option<SignIn>, IdentityError> {
                // Before the success clears the failure count it reads.
                let verdict = self.sign_in_risk(db, &customer_id, Some(&subjects[0]), context)?;
                if verdict == sign_in_risk::Verdict::Blocked {
                    return Ok(None);
                }
                throttle::clear(db, &subjects[0])?;
                if second_factor || verdict == sign_in_risk::Verdict::StepUp {
                    let detail = if second_factor { "" } else { "risk step-up" };
                    self.event(db, Some(&customer_id), "password_verified", context, detail)?;
                    let method = if second_factor {
                        Method::Totp
                    } else {
                        Method::Sms
                    };
                    return Ok(Some(SignIn::SecondFactor(self.login_challenge(
                        db,
                        &customer_id,
                        method,
                    )?)));
                }
                self.event(db, Some(&customer_id), "signed_in", context, "")?;
                Ok(Some(SignIn::Session(self.open_session(
                    db,
                    &customer_id,
                    context,
                    now,
                )?)))
            })?;
        // Blocked: the freeze committed (the customer is alerted on their
        // own contact); whoever holds the password learns nothing from it.
        signed_in.ok_or(IdentityError::InvalidCredentials)
    }

    /// The lock-out alert always goes out (a security alert, not marketing).
    fn alert_locked(
        &self,
        customer_id: &str,
        contact: &Contact,
        context: &Context,
        now: i64,
    ) -> Result<(), IdentityError> {
        let minutes = self.policy.lock_seconds / 60;
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            self.append(
                db,
                &Entry {
                    at: now,
                    actor: ACTOR_SYSTEM,
                    action: "locked",
                    subject: Some(customer_id),
                    ip: &context.ip,
                    outcome: Outcome::Ok,
                    detail: "too many failed sign-ins",
                },
            )?;
            let key = format!("sec:account_locked:{}", random_hex(8));
            coffer_notify::alerts::send(
                db,
                &self.vault,
                &coffer_notify::alerts::Alert {
                    customer_id,
                    key: &key,
                    category: coffer_notify::preferences::Category::Security,
                    template: "account_locked",
                    text: coffer_notify::alerts::Bilingual::new(
                        "Coffer security alert",
                        format!("Too many wrong passwords: sign-in to your Coffer wallet is locked for {minutes} minutes. \
                         If this was not you, contact the bank."),
                        "Coffer 安全提醒",
                        format!("密码错误次数过多，您的 Coffer 钱包登录已锁定 {minutes} 分钟；如非本人操作，请联系银行。"),
                    ),
                },
                Some(&alert_contact(contact)),
                now,
            )?;
            Ok(())
        })
    }

    /// The session a token names, if it is live; slides its idle expiry.
    pub fn authenticate(&self, token: &Secret<String>) -> Result<SessionInfo, IdentityError> {
        session::authenticate(&self.sql, &self.policy, token, self.now())
    }

    pub fn sessions(&self, info: &SessionInfo) -> Result<Vec<SessionView>, IdentityError> {
        session::list(&self.sql, info, self.now())
    }

    pub fn revoke_session(
        &self,
        info: &SessionInfo,
        session_id: &str,
        context: &Context,
    ) -> Result<(), IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let revoked = db.execute(
                "UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND customer_id = $2 AND revoked_at IS NULL",
                sql_params![session_id, info.customer_id.as_str(), now],
            )?;
            if revoked != 1 {
                return Err(IdentityError::NotFound("session"));
            }
            self.event(db, Some(&info.customer_id), "session_revoked", context, session_id)
        })
    }

    /// Signs out every session of the customer (including this one).
    pub fn revoke_all_sessions(
        &self,
        info: &SessionInfo,
        context: &Context,
    ) -> Result<u64, IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<u64, IdentityError> {
            let revoked = db.execute(
                "UPDATE sessions SET revoked_at = $2 WHERE customer_id = $1 AND revoked_at IS NULL",
                sql_params![info.customer_id.as_str(), now],
            )?;
            self.event(
                db,
                Some(&info.customer_id),
                "signed_out_everywhere",
                context,
                "",
            )?;
            Ok(revoked)
        })
    }

    pub fn customer(&self, customer_id: &str) -> Result<CustomerView, IdentityError> {
        let row = self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id, display_name_enc, contact_kind, contact_masked, tier, status, created_at FROM customers WHERE id = $1",
                    sql_params![customer_id],
                )
            })?
            .ok_or(IdentityError::NotFound("customer"))?;
        Ok(CustomerView {
            id: row.text(0)?,
            display_name: self.vault.decrypt_text(NAME_CONTEXT, &row.bytes(1)?)?,
            contact_kind: ContactKind::parse(&row.text(2)?)
                .ok_or_else(|| IdentityError::Internal("bad contact kind".into()))?,
            contact_masked: row.text(3)?,
            tier: row.int(4)?,
            status: row.text(5)?,
            created_at: row.int(6)?,
        })
    }

    /// The active customer reached at `contact` (through the blind index, so
    /// the contact is never decrypted or compared in clear), for payments to
    /// a phone number or e-mail. A frozen customer is not found: money must
    /// not be sent into a wallet under investigation.
    pub fn find_active_by_contact(
        &self,
        contact: &Contact,
    ) -> Result<Option<String>, IdentityError> {
        let index = self.vault.blind_index("contact", contact.as_str());
        Ok(self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT id FROM customers WHERE contact_index = $1 AND status = 'active'",
                    sql_params![index.as_str()],
                )
            })?
            .map(|r| r.text(0))
            .transpose()?)
    }

    /// Alerts a customer inside the caller's transaction (a payment request,
    /// a payment received): to the inbox and their contact as their
    /// preferences allow, once per `key`, exactly when the change commits.
    pub fn notify_customer(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        key: &str,
        category: coffer_notify::preferences::Category,
        template: &'static str,
        text: coffer_notify::alerts::Bilingual,
    ) -> Result<(), IdentityError> {
        let contact = self.contact_of(db, customer_id)?;
        coffer_notify::alerts::send(
            db,
            &self.vault,
            &coffer_notify::alerts::Alert {
                customer_id,
                key,
                category,
                template,
                text,
            },
            Some(&alert_contact(&contact)),
            self.now(),
        )?;
        Ok(())
    }

    /// The last 100 security events about a customer, newest first, from the
    /// audit log: (action, ip, detail, at).
    pub fn security_events(
        &self,
        customer_id: &str,
    ) -> Result<Vec<(String, String, String, i64)>, IdentityError> {
        let filter = coffer_audit::Filter {
            subject: Some(customer_id),
            limit: 100,
            ..coffer_audit::Filter::default()
        };
        let records = self
            .sql
            .run(|db| Ok(coffer_audit::entries(db, &filter)))??;
        Ok(records
            .into_iter()
            .map(|r| (r.action, r.ip, r.detail, r.at))
            .collect())
    }

    /// A customer's own action (or an anonymous one when there is no
    /// customer yet), which succeeded: audited in the caller's transaction.
    fn event(
        &self,
        db: &mut dyn Sql,
        customer_id: Option<&str>,
        kind: &str,
        context: &Context,
        detail: &str,
    ) -> Result<(), IdentityError> {
        let actor =
            customer_id.map_or_else(|| ACTOR_ANONYMOUS.to_string(), coffer_audit::customer_actor);
        self.append(
            db,
            &Entry {
                at: self.now(),
                actor: &actor,
                action: kind,
                subject: customer_id,
                ip: &context.ip,
                outcome: Outcome::Ok,
                detail,
            },
        )
    }

    fn append(&self, db: &mut dyn Sql, entry: &Entry<'_>) -> Result<(), IdentityError> {
        coffer_audit::append(db, entry)?;
        Ok(())
    }
}
