//! `Dataset`: one entry of the public data resource catalogue.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, dns_label_name_rule};
use super::masking::MaskingRule;

/// Namespace that holds raw data and the jobs that read it.
pub const VAULT_NAMESPACE: &str = "cleanroom-vault";

/// A catalogue entry (公共数据资源目录) for one raw data set held in the
/// vault namespace `cleanroom-vault`. Scenarios select its columns; each column
/// carries a sensitivity class and the default masking rule that scenarios may
/// only strengthen.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "cleanroom.io",
    version = "v1alpha1",
    kind = "Dataset",
    plural = "datasets",
    shortname = "pds",
    category = "cleanroom",
    status = "DatasetStatus",
    derive = "PartialEq",
    doc = "A catalogue entry for one raw public data set kept in the cleanroom-vault namespace: provider, classification, format, location and columns with their sensitivity and default masking rule.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase", description = "Whether the dataset is available to scenarios"),
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider", description = "The unit that provides the data"),
    printcolumn(name = "Classification", type_ = "string", json_path = ".spec.classification", description = "General, Important or Core"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = dns_label_name_rule(),
)]
#[serde(rename_all = "camelCase")]
pub struct DatasetSpec {
    /// The government unit that provides the data (数据提供单位).
    #[schemars(length(min = 1, max = 256))]
    pub provider: String,
    /// Classification level of the data under the data security rules:
    /// General (一般), Important (重要) or Core (核心).
    pub classification: Classification,
    /// File format of the raw data.
    pub format: DataFormat,
    /// Where the raw data sits: a PersistentVolumeClaim in the namespace
    /// cleanroom-vault and a path inside it. Raw volumes are only ever mounted
    /// by jobs in that namespace.
    pub source: DataSource,
    /// The columns of the data, each with its type, sensitivity class and
    /// default masking rule. Names are unique. The list is replaced as a
    /// whole on apply (atomic), so that a duplicate name is reported by the
    /// uniqueness rule below.
    #[schemars(length(min = 1, max = 256))]
    #[x_kube(
        validation = Rule::new("self.all(c, self.exists_one(d, d.name == c.name))")
            .message("column names must be unique: rename or remove the duplicate column")
    )]
    pub columns: Vec<Column>,
}

/// Classification level (GB/T 43697 data classification).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Classification {
    /// General data (一般数据).
    General,
    /// Important data (重要数据).
    Important,
    /// Core data (核心数据).
    Core,
}

/// File format of a dataset.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum DataFormat {
    /// Comma-separated values with a header row.
    #[serde(rename = "CSV")]
    Csv,
    /// One JSON object per line.
    #[serde(rename = "JSONLines")]
    JsonLines,
    /// Apache Parquet.
    Parquet,
}

/// Location of raw data inside the vault.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// Name of a PersistentVolumeClaim in the namespace cleanroom-vault.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// Path of the file (or directory of files) relative to the root of the
    /// claim, for example `population/2024.csv`.
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(validation = Rule::new("!self.startsWith('/') && self != '..' && !self.startsWith('../') && !self.endsWith('/..') && !self.contains('/../')")
        .message("path is relative to the root of the claim: it must not start with / or contain .. segments"))]
    pub path: String,
}

/// One column of a dataset.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.sensitivity in ['ResidentId', 'Mobile', 'Name', 'Address', 'BankCard', 'Plate', 'Email']) || self.rule.kind != 'keep'")
    .message("a column with personal sensitivity (ResidentId, Mobile, Name, Address, BankCard, Plate, Email) is never delivered in clear: its rule must not be keep; use mask, generalize, hash, redact or drop")
    .field_path(".rule"))]
#[x_kube(validation = Rule::new("self.rule.kind != 'mask' || self.type == 'string'")
    .message("rule kind mask applies to string columns only: use generalize, noise, hash, redact or drop")
    .field_path(".rule"))]
#[x_kube(validation = Rule::new("self.rule.kind != 'noise' || self.type in ['integer', 'decimal']")
    .message("rule kind noise applies to integer and decimal columns only")
    .field_path(".rule"))]
#[x_kube(validation = Rule::new("self.rule.kind != 'generalize' || (has(self.rule.bucket) ? self.type in ['integer', 'decimal'] : has(self.rule.truncate) ? self.type in ['date', 'datetime'] : self.type == 'string')")
    .message("generalize must fit the column type: bucket for integer and decimal, truncate for date and datetime, prefix for string")
    .field_path(".rule"))]
pub struct Column {
    /// Column name as it appears in the raw data (header, JSON key or Parquet field).
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Value type.
    #[serde(rename = "type")]
    pub type_: ColumnType,
    /// Sensitivity class. ResidentId, Mobile, Name, Address, BankCard, Plate
    /// and Email are personal information and are never delivered in clear;
    /// CreditCode identifies an organisation; FreeText may contain anything;
    /// QuasiIdentifier can re-identify people in combination (birth date,
    /// postcode, ...); None is not sensitive.
    pub sensitivity: Sensitivity,
    /// Default masking rule. A scenario may ask for a stronger rule, never a weaker one.
    pub rule: MaskingRule,
}

/// Value type of a column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ColumnType {
    /// Text.
    String,
    /// Whole number.
    Integer,
    /// Decimal number.
    Decimal,
    /// Calendar date.
    Date,
    /// Date and time.
    Datetime,
    /// true or false.
    Boolean,
}

/// Sensitivity class of a column.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Sensitivity {
    /// Resident identity card number (居民身份证号).
    ResidentId,
    /// Mobile phone number.
    Mobile,
    /// Person's name.
    Name,
    /// Postal address.
    Address,
    /// Bank card number.
    BankCard,
    /// Vehicle licence plate.
    Plate,
    /// E-mail address.
    Email,
    /// Unified social credit code of an organisation.
    CreditCode,
    /// Free text that may contain anything.
    FreeText,
    /// Not identifying alone, but can re-identify people in combination.
    QuasiIdentifier,
    /// Not sensitive.
    None,
}

impl Sensitivity {
    /// Personal information: never delivered in clear.
    pub const PERSONAL: [Sensitivity; 7] = [
        Sensitivity::ResidentId,
        Sensitivity::Mobile,
        Sensitivity::Name,
        Sensitivity::Address,
        Sensitivity::BankCard,
        Sensitivity::Plate,
        Sensitivity::Email,
    ];

    /// True for personal information (ResidentId, Mobile, Name, Address,
    /// BankCard, Plate, Email).
    pub fn is_personal(self) -> bool {
        Self::PERSONAL.contains(&self)
    }
}

impl DatasetSpec {
    /// The column with this name, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Observed state of a Dataset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Summary for humans: Pending, Available or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DatasetPhase>,
    /// Standard conditions (Ready).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Summary of a Dataset's state.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[schemars(transform = super::common::without_description)]
pub enum DatasetPhase {
    /// Not yet checked.
    Pending,
    /// Checked: scenarios may use it.
    Available,
    /// Its definition or its source is wrong; see the Ready condition.
    Invalid,
}
