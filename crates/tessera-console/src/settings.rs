//! [`Settings`]: how the consoles are set up by the embedding application.

use std::fmt;
use std::sync::Arc;

use tessera::core::id::{AccessType, EndpointId};
use tessera_qr::AndroidProvisioning;

use crate::error::{Error, Result};
use crate::host::Host;

/// An HTTP endpoint of the application that the Endpoints console manages tokens for.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct EndpointConfig {
    /// The endpoint id the application checks tokens against.
    pub id: EndpointId,
    /// Whether the endpoint allows deleting: it then has a DELETE primary token too.
    pub allow_delete: bool,
}

impl EndpointConfig {
    /// An endpoint `id`, with a DELETE primary when `allow_delete`.
    ///
    /// # Errors
    ///
    /// [`Error::BadInput`] when `id` is not a valid endpoint id.
    pub fn new(id: &str, allow_delete: bool) -> Result<Self> {
        Ok(Self {
            id: EndpointId::parse(id).map_err(|e| Error::bad(e.to_string()))?,
            allow_delete,
        })
    }
}

/// How the consoles are set up: who the host is, the installer command, the endpoints, the
/// Android Enterprise provisioning values and the application access types.
///
/// ```
/// # use tessera_console::{Settings, EndpointConfig};
/// # fn demo(host: impl tessera_console::Host) -> Result<(), tessera_console::Error> {
/// let settings = Settings::new(host)
///     .title("Acme tokens")
///     .installer_template("msiexec /i agent.msi TOKEN={token} /qn")
///     .endpoint(EndpointConfig::new("orders", true)?)
///     .access_types(["security-director", "third-party-feeds"])?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Settings {
    pub(crate) host: Arc<dyn Host>,
    pub(crate) title: String,
    pub(crate) installer_template: Option<String>,
    pub(crate) endpoints: Vec<EndpointConfig>,
    pub(crate) android: Option<AndroidProvisioning>,
    pub(crate) access_types: Vec<AccessType>,
    pub(crate) csrf_key: Option<[u8; 32]>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("title", &self.title)
            .field("installer_template", &self.installer_template)
            .field("endpoints", &self.endpoints)
            .field("android", &self.android)
            .field("access_types", &self.access_types)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Consoles for `host`, titled "Tokens", with no installer command, no endpoints, no
    /// Android Enterprise provisioning and the two access types of the seed
    /// (`security-director`, `third-party-feeds`).
    pub fn new(host: impl Host) -> Self {
        Self {
            host: Arc::new(host),
            title: String::from("Tokens"),
            installer_template: None,
            endpoints: Vec::new(),
            android: None,
            access_types: ["security-director", "third-party-feeds"]
                .into_iter()
                .filter_map(|t| AccessType::parse(t).ok())
                .collect(),
            csrf_key: None,
        }
    }

    /// The title in every page's header.
    #[must_use]
    pub fn title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The installer command of the Mass deployment console, with `{token}` where the most
    /// recent deployment token goes.
    #[must_use]
    pub fn installer_template(mut self, template: impl Into<String>) -> Self {
        self.installer_template = Some(template.into());
        self
    }

    /// Add an endpoint to the Endpoints console.
    #[must_use]
    pub fn endpoint(mut self, endpoint: EndpointConfig) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Offer Android Enterprise provisioning QR codes on the Onboarding console, with these
    /// values.
    #[must_use]
    pub fn android(mut self, provisioning: AndroidProvisioning) -> Self {
        self.android = Some(provisioning);
        self
    }

    /// The access types an application token may be given (check boxes on its form).
    ///
    /// # Errors
    ///
    /// [`Error::BadInput`] when one is not a valid access type or none is given.
    pub fn access_types<'a>(mut self, types: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        self.access_types = types
            .into_iter()
            .map(|t| AccessType::parse(t).map_err(|e| Error::bad(e.to_string())))
            .collect::<Result<_>>()?;
        if self.access_types.is_empty() {
            return Err(Error::bad("give at least one access type"));
        }
        Ok(self)
    }

    /// The key CSRF tokens are derived under. Several instances behind one load balancer must
    /// share it; by default each router draws its own at start.
    #[must_use]
    pub const fn csrf_key(mut self, key: [u8; 32]) -> Self {
        self.csrf_key = Some(key);
        self
    }
}
