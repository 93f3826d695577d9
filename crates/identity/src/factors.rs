//! Second factors and the challenges they answer.
//!
//! TOTP (RFC 6238: HMAC-SHA1, 6 digits, 30 s steps, one step of clock skew
//! either way). The seed is stored encrypted; a code is accepted once: the
//! factor remembers the last step used, so a code seen over a shoulder cannot
//! be replayed. Ten recovery codes, stored as keyed hashes, each usable once.
//!
//! A challenge is single-use and short-lived. A sign-in challenge turns a
//! verified password into a session once the second factor answers. A
//! step-up challenge is bound to one operation (kind, amount, currency,
//! payee): verifying it lets exactly that operation through, once. A
//! step-up may be answered with a passkey: the WebAuthn request (its random
//! challenge and the customer's credentials) is kept in the step-up
//! challenge's row, so the signed assertion answers that challenge and no
//! other, and everything else (attempts, expiry, single use, the binding
//! to the operation) is shared with the code methods.

use coffer_core::Secret;
use coffer_notify::{enqueue, Message};
use coffer_store::sql::Sql;
use coffer_store::sql_params;
use rand::{Rng, RngCore};
use totp_rs::{Algorithm, TOTP};
use webauthn_rs::prelude::{PublicKeyCredential, RequestChallengeResponse};

use crate::{
    random_hex, same, Contact, Context, Identity, IdentityError, NewSession, SessionInfo,
    CONTACT_CONTEXT, NANOS_PER_SECOND,
};

pub(crate) const TOTP_CONTEXT: &str = "customer.totp_seed";
pub(crate) const STEP_SECONDS: i64 = 30;
pub const RECOVERY_CODES: usize = 10;
pub const CHALLENGE_TTL_SECONDS: i64 = 300;
const CHALLENGE_ATTEMPTS_MAX: i64 = 5;
pub const ISSUER: &str = "Coffer";

/// What a new TOTP enrolment shows the customer, once.
#[derive(Debug)]
pub struct TotpEnrollment {
    pub secret_base32: Secret<String>,
    pub otpauth_url: Secret<String>,
    /// The otpauth URL as a QR code (SVG), for the authenticator app to scan.
    pub qr_svg: Secret<String>,
}

/// The operation a step-up verification is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub kind: String,
    pub amount: i64,
    pub currency: String,
    pub payee: String,
}

impl Operation {
    fn canonical(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.kind, self.amount, self.currency, self.payee
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Totp,
    Sms,
    /// A registered passkey with user verification (step-up only).
    Passkey,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Sms => "code",
            Method::Passkey => "passkey",
        }
    }

    pub fn parse(text: &str) -> Option<Method> {
        match text {
            "totp" => Some(Method::Totp),
            "code" | "sms" => Some(Method::Sms),
            "passkey" => Some(Method::Passkey),
            _ => None,
        }
    }
}

/// A challenge waiting for its answer.
#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub method: Method,
    pub expires_at: i64,
    /// For `Method::Passkey`: the options for `navigator.credentials.get()`
    /// (the customer's passkeys, user verification required).
    pub passkey_options: Option<RequestChallengeResponse>,
}

/// What a customer answers a challenge with.
#[derive(Clone, Copy)]
pub(crate) enum Answer<'a> {
    /// A TOTP, recovery or SMS/e-mail code.
    Code(&'a str),
    /// A signed WebAuthn assertion.
    Passkey(&'a PublicKeyCredential),
}

impl Answer<'_> {
    /// The refusal of a wrong answer: counted against the challenge.
    fn refusal(self) -> IdentityError {
        match self {
            Answer::Code(_) => IdentityError::CodeInvalid,
            Answer::Passkey(_) => crate::passkeys::invalid_credential(),
        }
    }

    fn audit_detail(self) -> &'static str {
        match self {
            Answer::Code(_) => "second factor",
            Answer::Passkey(_) => "passkey",
        }
    }
}

/// A refusal that means a wrong answer (as opposed to a dead challenge).
fn is_wrong_answer(error: &IdentityError) -> bool {
    matches!(
        error,
        IdentityError::CodeInvalid
            | IdentityError::InvalidField {
                field: "credential",
                ..
            }
    )
}

/// The result of a password check: a session, or a second factor to answer.
#[derive(Debug)]
pub enum SignIn {
    Session(NewSession),
    SecondFactor(Challenge),
}

pub(crate) fn totp(seed: &[u8]) -> Result<TOTP, IdentityError> {
    TOTP::new(Algorithm::SHA1, 6, 1, STEP_SECONDS as u64, seed.to_vec())
        .map_err(|e| IdentityError::Internal(format!("TOTP: {e}")))
}

/// Characters safe to put in an otpauth label or parameter.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    let mut code = String::with_capacity(11);
    for i in 0..10 {
        if i == 5 {
            code.push('-');
        }
        code.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    code
}

impl Identity {
    fn seconds(&self) -> i64 {
        self.now() / NANOS_PER_SECOND
    }

    /// Starts (or restarts) TOTP enrolment; the factor counts once confirmed.
    pub fn enroll_totp(&self, info: &SessionInfo) -> Result<TotpEnrollment, IdentityError> {
        let customer = self.customer(&info.customer_id)?;
        let mut seed = [0u8; 20];
        rand::rng().fill_bytes(&mut seed);
        let encoded = match totp_rs::Secret::Raw(seed.to_vec()).to_encoded() {
            totp_rs::Secret::Encoded(text) => text,
            totp_rs::Secret::Raw(_) => return Err(IdentityError::Internal("base32".into())),
        };
        let url = format!(
            "otpauth://totp/{issuer}:{label}?secret={encoded}&issuer={issuer}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
            issuer = ISSUER,
            label = url_encode(&customer.contact_masked)
        );
        let qr_svg = qrcode::QrCode::new(url.as_bytes())
            .map_err(|e| IdentityError::Internal(format!("QR: {e}")))?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        let secret_enc = self.vault.encrypt(TOTP_CONTEXT, &seed)?;
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let confirmed = db
                .query_opt(
                    "SELECT confirmed_at FROM totp_factors WHERE customer_id = $1",
                    sql_params![info.customer_id.as_str()],
                )?
                .map(|r| r.opt_int(0))
                .transpose()?
                .flatten();
            if confirmed.is_some() {
                return Err(IdentityError::Conflict(
                    "an authenticator app is already enrolled; disable it first",
                ));
            }
            db.execute(
                "DELETE FROM totp_factors WHERE customer_id = $1",
                sql_params![info.customer_id.as_str()],
            )?;
            db.execute(
                "INSERT INTO totp_factors (customer_id, secret_enc, confirmed_at, last_step, created_at) VALUES ($1, $2, NULL, 0, $3)",
                sql_params![info.customer_id.as_str(), secret_enc, now],
            )?;
            Ok(())
        })?;
        Ok(TotpEnrollment {
            secret_base32: Secret::new(encoded),
            otpauth_url: Secret::new(url),
            qr_svg: Secret::new(qr_svg),
        })
    }

    /// Checks a TOTP code for the customer and uses up its time step.
    fn check_totp(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        code: &str,
        confirmed_only: bool,
    ) -> Result<bool, IdentityError> {
        let Some(row) = db.query_opt(
            "SELECT secret_enc, confirmed_at, last_step FROM totp_factors WHERE customer_id = $1",
            sql_params![customer_id],
        )?
        else {
            return Ok(false);
        };
        if confirmed_only && row.opt_int(1)?.is_none() {
            return Ok(false);
        }
        let seed = self.vault.decrypt(TOTP_CONTEXT, &row.bytes(0)?)?;
        let generator = totp(seed.expose())?;
        let step = self.seconds() / STEP_SECONDS;
        let last_step = row.int(2)?;
        for candidate in [step - 1, step, step + 1] {
            let Ok(time) = u64::try_from(candidate * STEP_SECONDS) else {
                continue;
            };
            if candidate > last_step && same(&generator.generate(time), code) {
                // Atomic: of two requests with the same code, one wins.
                let used = db.execute(
                    "UPDATE totp_factors SET last_step = $2 WHERE customer_id = $1 AND last_step < $2",
                    sql_params![customer_id, candidate],
                )?;
                return Ok(used == 1);
            }
        }
        Ok(false)
    }

    /// Confirms enrolment with a first code; returns the recovery codes (shown once).
    pub fn confirm_totp(
        &self,
        info: &SessionInfo,
        code: &Secret<String>,
        context: &Context,
    ) -> Result<Vec<Secret<String>>, IdentityError> {
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| recovery_code()).collect();
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let pending = db
                .query_opt(
                    "SELECT confirmed_at FROM totp_factors WHERE customer_id = $1",
                    sql_params![info.customer_id.as_str()],
                )?
                .ok_or(IdentityError::NotFound("enrolment"))?;
            if pending.opt_int(0)?.is_some() {
                return Err(IdentityError::Conflict("already confirmed"));
            }
            if !self.check_totp(db, &info.customer_id, code.expose(), false)? {
                return Err(IdentityError::CodeInvalid);
            }
            db.execute(
                "UPDATE totp_factors SET confirmed_at = $2 WHERE customer_id = $1",
                sql_params![info.customer_id.as_str(), now],
            )?;
            db.execute(
                "DELETE FROM recovery_codes WHERE customer_id = $1",
                sql_params![info.customer_id.as_str()],
            )?;
            for recovery in &codes {
                db.execute(
                    "INSERT INTO recovery_codes (customer_id, code_hash, used_at) VALUES ($1, $2, NULL)",
                    sql_params![
                        info.customer_id.as_str(),
                        self.vault.keyed_hash("recovery", recovery)
                    ],
                )?;
            }
            self.event(db, Some(&info.customer_id), "totp_enabled", context, "")?;
            self.security_alert(
                db,
                &info.customer_id,
                "factor_added",
                "An authenticator app was added to your Coffer wallet. If this was not you, contact the bank at once. \
                 您的 Coffer 钱包已绑定身份验证器；如非本人操作，请立即联系银行。",
            )?;
            Ok(())
        })?;
        Ok(codes.into_iter().map(Secret::new).collect())
    }

    /// Removes the authenticator; needs a current code (or a recovery code).
    pub fn disable_totp(
        &self,
        info: &SessionInfo,
        code: &Secret<String>,
        context: &Context,
    ) -> Result<(), IdentityError> {
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            if !self.answer(db, &info.customer_id, Method::Totp, code.expose(), None)? {
                return Err(IdentityError::CodeInvalid);
            }
            db.execute(
                "DELETE FROM totp_factors WHERE customer_id = $1",
                sql_params![info.customer_id.as_str()],
            )?;
            db.execute(
                "DELETE FROM recovery_codes WHERE customer_id = $1",
                sql_params![info.customer_id.as_str()],
            )?;
            self.event(db, Some(&info.customer_id), "totp_disabled", context, "")?;
            self.security_alert(
                db,
                &info.customer_id,
                "factor_removed",
                "The authenticator app was removed from your Coffer wallet. If this was not you, contact the bank at once. \
                 您的 Coffer 钱包已解绑身份验证器；如非本人操作，请立即联系银行。",
            )
        })
    }

    pub fn has_totp(&self, customer_id: &str) -> Result<bool, IdentityError> {
        Ok(self
            .sql
            .run(|db| {
                db.query_opt(
                    "SELECT 1 FROM totp_factors WHERE customer_id = $1 AND confirmed_at IS NOT NULL",
                    sql_params![customer_id],
                )
            })?
            .is_some())
    }

    /// Checks an answer to a challenge: a TOTP code, a recovery code (for
    /// TOTP challenges), or the code sent by SMS/e-mail (`code_hash`).
    pub(crate) fn answer(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        method: Method,
        code: &str,
        code_hash: Option<&str>,
    ) -> Result<bool, IdentityError> {
        let code = code.trim();
        match method {
            // A passkey challenge is answered by an assertion, never a code.
            Method::Passkey => Ok(false),
            Method::Sms => Ok(code_hash
                .is_some_and(|expected| same(&self.vault.keyed_hash("challenge", code), expected))),
            Method::Totp if code.len() == 6 => self.check_totp(db, customer_id, code, true),
            Method::Totp => {
                let used = db.execute(
                    "UPDATE recovery_codes SET used_at = $3 WHERE customer_id = $1 AND code_hash = $2 AND used_at IS NULL",
                    sql_params![
                        customer_id,
                        self.vault.keyed_hash("recovery", &code.to_lowercase()),
                        self.now()
                    ],
                )?;
                Ok(used == 1)
            }
        }
    }

    fn create_challenge(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        purpose: &str,
        operation_hash: &str,
        method: Method,
    ) -> Result<Challenge, IdentityError> {
        let now = self.now();
        let mut challenge = Challenge {
            id: format!("chl_{}", random_hex(12)),
            method,
            expires_at: now + CHALLENGE_TTL_SECONDS * NANOS_PER_SECOND,
            passkey_options: None,
        };
        let mut passkey_state = None;
        let code_hash = match method {
            Method::Totp => None,
            Method::Passkey => {
                let (options, state) = self.start_passkey_assertion(db, customer_id)?;
                challenge.passkey_options = Some(options);
                passkey_state = Some(state);
                None
            }
            Method::Sms => {
                let code = crate::one_time_code();
                self.send_code(db, customer_id, &code)?;
                Some(self.vault.keyed_hash("challenge", &code))
            }
        };
        db.execute(
            "INSERT INTO challenges (id, customer_id, purpose, operation_hash, method, code_hash, attempts, expires_at, verified_at, consumed_at, created_at, passkey_state) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, $7, NULL, NULL, $8, $9)",
            sql_params![
                challenge.id.as_str(),
                customer_id,
                purpose,
                operation_hash,
                method.as_str(),
                code_hash,
                challenge.expires_at,
                now,
                passkey_state
            ],
        )?;
        Ok(challenge)
    }

    pub(crate) fn contact_of(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
    ) -> Result<Contact, IdentityError> {
        let row = db
            .query_opt(
                "SELECT contact_enc FROM customers WHERE id = $1",
                sql_params![customer_id],
            )?
            .ok_or(IdentityError::NotFound("customer"))?;
        let text = self.vault.decrypt_text(CONTACT_CONTEXT, &row.bytes(0)?)?;
        Contact::parse(text.expose())
            .ok_or_else(|| IdentityError::Internal("stored contact does not parse".into()))
    }

    fn send_code(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        code: &str,
    ) -> Result<(), IdentityError> {
        let contact = self.contact_of(db, customer_id)?;
        enqueue(
            db,
            &self.vault,
            &Message {
                channel: contact.kind().channel(),
                recipient: Secret::new(contact.as_str().to_string()),
                recipient_masked: contact.masked(),
                customer_id: Some(customer_id),
                template: "verification_code",
                subject: "Coffer".into(),
                body: Secret::new(format!(
                    "Your Coffer confirmation code is {code}. Never share it, not even with bank staff. \
                     您的 Coffer 确认码是 {code}，请勿告诉任何人（包括银行员工）。"
                )),
            },
            self.now(),
        )?;
        Ok(())
    }

    /// A security alert to the inbox and the customer's contact; always
    /// sent, whatever the preferences say.
    pub(crate) fn security_alert(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        template: &'static str,
        text: &str,
    ) -> Result<(), IdentityError> {
        let (en, zh) = crate::split_bilingual(text);
        self.security_alert_in(db, customer_id, template, en, zh)
    }

    /// A security alert whose two languages are given apart: for texts that
    /// quote the client's own words, which may hold Chinese characters where
    /// the English half is.
    pub(crate) fn security_alert_in(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        template: &'static str,
        en: String,
        zh: String,
    ) -> Result<(), IdentityError> {
        let contact = self.contact_of(db, customer_id)?;
        let mut key = [0u8; 8];
        rand::rng().fill_bytes(&mut key);
        let key = format!("sec:{template}:{}", hex::encode(key));
        coffer_notify::alerts::send(
            db,
            &self.vault,
            &coffer_notify::alerts::Alert {
                customer_id,
                key: &key,
                category: coffer_notify::preferences::Category::Security,
                template,
                text: coffer_notify::alerts::Bilingual::new(
                    "Coffer security alert",
                    en,
                    "Coffer 安全提醒",
                    zh,
                ),
            },
            Some(&crate::alert_contact(&contact)),
            self.now(),
        )?;
        Ok(())
    }

    /// A sign-in challenge after a verified password: the authenticator
    /// app for customers with TOTP, otherwise (a risk step-up) a one-time
    /// code sent to the customer's contact.
    pub(crate) fn login_challenge(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        method: Method,
    ) -> Result<Challenge, IdentityError> {
        self.create_challenge(db, customer_id, "login", "", method)
    }

    /// Answers a challenge; marks it verified. Wrong answers count, and a
    /// challenge dies after a few.
    fn verify_challenge(
        &self,
        db: &mut dyn Sql,
        challenge_id: &str,
        purpose: &str,
        customer_id: Option<&str>,
        answer: Answer<'_>,
    ) -> Result<String, IdentityError> {
        let now = self.now();
        let row = db
            .query_opt(
                "SELECT customer_id, method, code_hash, attempts, expires_at, verified_at, consumed_at, passkey_state FROM challenges \
                 WHERE id = $1 AND purpose = $2",
                sql_params![challenge_id, purpose],
            )?
            .ok_or(IdentityError::ChallengeInvalid)?;
        let owner = row.text(0)?;
        if customer_id.is_some_and(|c| c != owner)
            || row.opt_int(5)?.is_some()
            || row.opt_int(6)?.is_some()
            || row.int(4)? <= now
            || row.int(3)? >= CHALLENGE_ATTEMPTS_MAX
        {
            return Err(IdentityError::ChallengeInvalid);
        }
        let method = Method::parse(&row.text(1)?).ok_or(IdentityError::ChallengeInvalid)?;
        let correct = match answer {
            Answer::Code(code) => {
                self.answer(db, &owner, method, code, row.opt_text(2)?.as_deref())?
            }
            Answer::Passkey(credential) => match (method, row.opt_text(7)?) {
                (Method::Passkey, Some(state)) => {
                    self.check_passkey_assertion(db, &owner, &state, credential)?
                }
                _ => false,
            },
        };
        if !correct {
            return Err(answer.refusal());
        }
        let verified = db.execute(
            "UPDATE challenges SET verified_at = $2 WHERE id = $1 AND verified_at IS NULL",
            sql_params![challenge_id, now],
        )?;
        if verified != 1 {
            return Err(IdentityError::ChallengeInvalid);
        }
        Ok(owner)
    }

    /// Counts a wrong answer against the challenge and audits it: a failed
    /// sign-in (by someone who knew the password) or a failed step-up.
    fn count_attempt(
        &self,
        challenge_id: &str,
        context: &Context,
        detail: &str,
    ) -> Result<(), IdentityError> {
        let now = self.now();
        self.sql.transaction(|db| -> Result<(), IdentityError> {
            let Some(row) = db.query_opt(
                "UPDATE challenges SET attempts = attempts + 1 WHERE id = $1 RETURNING customer_id, purpose",
                sql_params![challenge_id],
            )?
            else {
                return Ok(());
            };
            let customer_id = row.text(0)?;
            let customer = coffer_audit::customer_actor(&customer_id);
            let (actor, action) = match row.text(1)?.as_str() {
                "login" => (coffer_audit::ACTOR_ANONYMOUS, "sign_in_failed"),
                _ => (customer.as_str(), "step_up_failed"),
            };
            coffer_audit::append(
                db,
                &coffer_audit::Entry {
                    at: now,
                    actor,
                    action,
                    subject: Some(&customer_id),
                    ip: &context.ip,
                    outcome: coffer_audit::Outcome::Refused,
                    detail,
                },
            )?;
            Ok(())
        })
    }

    /// Second step of a sign-in with a second factor.
    pub fn complete_sign_in(
        &self,
        challenge_id: &str,
        code: &Secret<String>,
        context: &Context,
    ) -> Result<NewSession, IdentityError> {
        let now = self.now();
        let result = self
            .sql
            .transaction(|db| -> Result<NewSession, IdentityError> {
                let customer_id = self.verify_challenge(
                    db,
                    challenge_id,
                    "login",
                    None,
                    Answer::Code(code.expose()),
                )?;
                db.execute(
                    "UPDATE challenges SET consumed_at = $2 WHERE id = $1",
                    sql_params![challenge_id, now],
                )?;
                self.event(
                    db,
                    Some(&customer_id),
                    "signed_in",
                    context,
                    "second factor",
                )?;
                self.open_session(db, &customer_id, context, now)
            });
        if matches!(result, Err(IdentityError::CodeInvalid)) {
            self.count_attempt(challenge_id, context, "second factor")?;
        }
        result
    }

    /// Issues a step-up challenge for one operation. For `Method::Passkey`
    /// the challenge carries the WebAuthn request options to answer.
    pub fn start_step_up(
        &self,
        info: &SessionInfo,
        operation: &Operation,
        method: Method,
    ) -> Result<Challenge, IdentityError> {
        if method == Method::Totp && !self.has_totp(&info.customer_id)? {
            return Err(IdentityError::invalid(
                "method",
                "no authenticator app is enrolled; use method \"code\"",
            ));
        }
        let operation_hash = self.vault.keyed_hash("operation", &operation.canonical());
        self.sql.transaction(|db| {
            self.create_challenge(db, &info.customer_id, "step_up", &operation_hash, method)
        })
    }

    /// Answers a step-up challenge with a code (TOTP, recovery, SMS/e-mail).
    pub fn verify_step_up(
        &self,
        info: &SessionInfo,
        challenge_id: &str,
        code: &Secret<String>,
        context: &Context,
    ) -> Result<(), IdentityError> {
        self.answer_step_up(info, challenge_id, Answer::Code(code.expose()), context)
    }

    /// Answers a passkey step-up challenge with the device's signed
    /// assertion; a wrong, foreign or forged one counts as a wrong answer.
    pub fn verify_step_up_passkey(
        &self,
        info: &SessionInfo,
        challenge_id: &str,
        assertion: &PublicKeyCredential,
        context: &Context,
    ) -> Result<(), IdentityError> {
        self.answer_step_up(info, challenge_id, Answer::Passkey(assertion), context)
    }

    fn answer_step_up(
        &self,
        info: &SessionInfo,
        challenge_id: &str,
        answer: Answer<'_>,
        context: &Context,
    ) -> Result<(), IdentityError> {
        let result = self.sql.transaction(|db| -> Result<(), IdentityError> {
            self.verify_challenge(db, challenge_id, "step_up", Some(&info.customer_id), answer)?;
            self.event(
                db,
                Some(&info.customer_id),
                "step_up_verified",
                context,
                challenge_id,
            )
        });
        if result.as_ref().is_err_and(is_wrong_answer) {
            self.count_attempt(challenge_id, context, answer.audit_detail())?;
        }
        result
    }

    /// Lets one operation through on a verified step-up challenge, once.
    /// Fails for any other operation, another customer, an unverified,
    /// expired or already used challenge.
    pub fn consume_step_up(
        &self,
        db: &mut dyn Sql,
        customer_id: &str,
        challenge_id: &str,
        operation: &Operation,
    ) -> Result<(), IdentityError> {
        let operation_hash = self.vault.keyed_hash("operation", &operation.canonical());
        let now = self.now();
        let consumed = db.execute(
            "UPDATE challenges SET consumed_at = $5 WHERE id = $1 AND customer_id = $2 AND purpose = 'step_up' \
             AND operation_hash = $3 AND verified_at IS NOT NULL AND consumed_at IS NULL AND expires_at > $4",
            sql_params![challenge_id, customer_id, operation_hash, now, now],
        )?;
        if consumed == 1 {
            Ok(())
        } else {
            Err(IdentityError::StepUpRequired)
        }
    }

    /// `consume_step_up` in a transaction of its own.
    pub fn consume_step_up_now(
        &self,
        customer_id: &str,
        challenge_id: &str,
        operation: &Operation,
    ) -> Result<(), IdentityError> {
        self.sql
            .transaction(|db| self.consume_step_up(db, customer_id, challenge_id, operation))
    }
}
