//! Published versions, aliases, and the settings kept beside a function: reserved
//! concurrency, provisioned concurrency configs, event-invoke configs.
//!
//! For: plain storage of these records (CRUD, listing, start-up loading). Not for: their
//! rules (which version an alias may point at, limits, preconditions): the API checks those
//! under its mutation lock before it writes, so these calls need no read-check-write
//! transactions of their own. Deleting a function (`delete_function`) removes all of them.

use serval_model::{
    AliasConfig, EventInvokeConfig, FunctionConfig, FunctionName, ProvisionedConcurrencyConfig,
};

use crate::{Store, StoreError};

impl Store {
    /// Reserves and returns the next version number of `name` (1 for the first publish).
    /// Numbers are never reused, even after a version is deleted. `NotFound` if the function
    /// does not exist.
    pub fn next_version_number(&self, name: &FunctionName) -> Result<u64, StoreError> {
        todo!("{name}")
    }

    /// Stores a published version (`cfg.version` is its number as text). Versions are
    /// immutable: storing a number that exists is `AlreadyExists`.
    pub fn put_version(&self, cfg: &FunctionConfig) -> Result<(), StoreError> {
        todo!("{cfg:?}")
    }

    /// One published version, or `None`.
    pub fn get_version(
        &self,
        name: &FunctionName,
        version: u64,
    ) -> Result<Option<FunctionConfig>, StoreError> {
        todo!("{name}{version}")
    }

    /// The function's published versions in ascending number order.
    pub fn list_versions(&self, name: &FunctionName) -> Result<Vec<FunctionConfig>, StoreError> {
        todo!("{name}")
    }

    /// Every published version of every function (start-up).
    pub fn all_versions(&self) -> Result<Vec<FunctionConfig>, StoreError> {
        todo!()
    }

    /// Deletes one published version and the settings put on it (event-invoke config,
    /// provisioned concurrency config, both keyed by the version number as qualifier);
    /// `false` if it did not exist.
    pub fn delete_version(&self, name: &FunctionName, version: u64) -> Result<bool, StoreError> {
        todo!("{name}{version}")
    }

    /// Creates or replaces an alias.
    pub fn put_alias(&self, alias: &AliasConfig) -> Result<(), StoreError> {
        todo!("{alias:?}")
    }

    /// One alias, or `None`.
    pub fn get_alias(
        &self,
        name: &FunctionName,
        alias: &str,
    ) -> Result<Option<AliasConfig>, StoreError> {
        todo!("{name}{alias}")
    }

    /// The function's aliases in name order.
    pub fn list_aliases(&self, name: &FunctionName) -> Result<Vec<AliasConfig>, StoreError> {
        todo!("{name}")
    }

    /// Every alias of every function (start-up).
    pub fn all_aliases(&self) -> Result<Vec<AliasConfig>, StoreError> {
        todo!()
    }

    /// Deletes an alias and the settings put on it (event-invoke config and provisioned
    /// concurrency config keyed by the alias name); `false` if it did not exist.
    pub fn delete_alias(&self, name: &FunctionName, alias: &str) -> Result<bool, StoreError> {
        todo!("{name}{alias}")
    }

    /// Sets (`Some`) or removes (`None`) the function's reserved concurrency. `NotFound` if
    /// the function does not exist.
    pub fn set_reserved_concurrency(
        &self,
        name: &FunctionName,
        reserved: Option<u32>,
    ) -> Result<(), StoreError> {
        todo!("{name}{reserved:?}")
    }

    /// The function's reserved concurrency, if any. `NotFound` if the function does not exist.
    pub fn reserved_concurrency(&self, name: &FunctionName) -> Result<Option<u32>, StoreError> {
        todo!("{name}")
    }

    /// Every function's reserved concurrency, for functions that have one.
    pub fn all_reserved_concurrency(&self) -> Result<Vec<(FunctionName, u32)>, StoreError> {
        todo!()
    }

    /// Creates or replaces the event-invoke config of `(cfg.function, cfg.qualifier)`.
    pub fn put_event_invoke_config(&self, cfg: &EventInvokeConfig) -> Result<(), StoreError> {
        todo!("{cfg:?}")
    }

    /// The event-invoke config of one qualifier (`$LATEST`, a number or an alias), or `None`.
    pub fn get_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<EventInvokeConfig>, StoreError> {
        todo!("{name}{qualifier}")
    }

    /// The function's event-invoke configs, ordered by qualifier.
    pub fn list_event_invoke_configs(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<EventInvokeConfig>, StoreError> {
        todo!("{name}")
    }

    /// Every event-invoke config (start-up).
    pub fn all_event_invoke_configs(&self) -> Result<Vec<EventInvokeConfig>, StoreError> {
        todo!()
    }

    /// Deletes one event-invoke config; `false` if there was none.
    pub fn delete_event_invoke_config(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        todo!("{name}{qualifier}")
    }

    /// Creates or replaces the provisioned concurrency config of `(cfg.function,
    /// cfg.qualifier)`.
    pub fn put_provisioned_concurrency(
        &self,
        cfg: &ProvisionedConcurrencyConfig,
    ) -> Result<(), StoreError> {
        todo!("{cfg:?}")
    }

    /// The provisioned concurrency config of one qualifier, or `None`.
    pub fn get_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<Option<ProvisionedConcurrencyConfig>, StoreError> {
        todo!("{name}{qualifier}")
    }

    /// The function's provisioned concurrency configs, ordered by qualifier.
    pub fn list_provisioned_concurrency(
        &self,
        name: &FunctionName,
    ) -> Result<Vec<ProvisionedConcurrencyConfig>, StoreError> {
        todo!("{name}")
    }

    /// Every provisioned concurrency config (start-up).
    pub fn all_provisioned_concurrency(
        &self,
    ) -> Result<Vec<ProvisionedConcurrencyConfig>, StoreError> {
        todo!()
    }

    /// Deletes one provisioned concurrency config; `false` if there was none.
    pub fn delete_provisioned_concurrency(
        &self,
        name: &FunctionName,
        qualifier: &str,
    ) -> Result<bool, StoreError> {
        todo!("{name}{qualifier}")
    }
}
