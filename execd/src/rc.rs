//! Exit codes and execution statuses (EXECD-NOTES §1.3, §3, §6).

use crate::agent::Standard;

pub const OCF_SUCCESS: i32 = 0;
pub const OCF_ERR_GENERIC: i32 = 1;
pub const OCF_ERR_ARGS: i32 = 2;
pub const OCF_ERR_UNIMPLEMENTED: i32 = 3;
pub const OCF_ERR_PERM: i32 = 4;
pub const OCF_ERR_INSTALLED: i32 = 5;
pub const OCF_ERR_CONFIGURED: i32 = 6;
pub const OCF_NOT_RUNNING: i32 = 7;
pub const OCF_RUNNING_PROMOTED: i32 = 8;
pub const OCF_FAILED_PROMOTED: i32 = 9;
pub const OCF_DEGRADED: i32 = 190;
pub const OCF_DEGRADED_PROMOTED: i32 = 191;

/// The execution status of an op (`op-status` in the CIB), apart from its rc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpStatus {
    Pending = -1,
    Done = 0,
    Cancelled = 1,
    Timeout = 2,
    NotSupported = 3,
    Error = 4,
    ErrorHard = 5,
    ErrorFatal = 6,
    NotInstalled = 7,
    NotConnected = 8,
    Invalid = 9,
    /// No fencing device can fence the target (stonith class).
    NoFenceDevice = 10,
}

impl OpStatus {
    /// The status for a number on the wire (unknown numbers are errors).
    pub fn from_i32(v: i32) -> OpStatus {
        match v {
            -1 => OpStatus::Pending,
            0 => OpStatus::Done,
            1 => OpStatus::Cancelled,
            2 => OpStatus::Timeout,
            3 => OpStatus::NotSupported,
            5 => OpStatus::ErrorHard,
            6 => OpStatus::ErrorFatal,
            7 => OpStatus::NotInstalled,
            8 => OpStatus::NotConnected,
            9 => OpStatus::Invalid,
            10 => OpStatus::NoFenceDevice,
            _ => OpStatus::Error,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OpStatus::Pending => "pending",
            OpStatus::Done => "complete",
            OpStatus::Cancelled => "Cancelled",
            OpStatus::Timeout => "Timed Out",
            OpStatus::NotSupported => "NOT SUPPORTED",
            OpStatus::Error => "Error",
            OpStatus::ErrorHard => "Hard error",
            OpStatus::ErrorFatal => "Fatal error",
            OpStatus::NotInstalled => "Not installed",
            OpStatus::NotConnected => "Not connected",
            OpStatus::Invalid => "Invalid",
            OpStatus::NoFenceDevice => "No fence device",
        }
    }
}

/// The name of an OCF exit code, as crm_mon prints it.
pub fn rc_name(rc: i32) -> &'static str {
    match rc {
        OCF_SUCCESS => "ok",
        OCF_ERR_GENERIC => "error",
        OCF_ERR_ARGS => "invalid parameter",
        OCF_ERR_UNIMPLEMENTED => "unimplemented feature",
        OCF_ERR_PERM => "insufficient privileges",
        OCF_ERR_INSTALLED => "not installed",
        OCF_ERR_CONFIGURED => "not configured",
        OCF_NOT_RUNNING => "not running",
        OCF_RUNNING_PROMOTED => "promoted",
        OCF_FAILED_PROMOTED => "promoted (failed)",
        OCF_DEGRADED => "OCF_DEGRADED",
        OCF_DEGRADED_PROMOTED => "OCF_DEGRADED_PROMOTED",
        _ => "unknown",
    }
}

/// An agent's exit code as an OCF code: ocf codes outside 0-9 and 190/191 become 1; LSB
/// `status` has its own table; other LSB actions keep 0-7.
pub fn map_rc(standard: Standard, action: &str, code: i32) -> i32 {
    match standard {
        Standard::Lsb if action == "status" || action == "monitor" => match code {
            0 => OCF_SUCCESS,
            1..=3 => OCF_NOT_RUNNING,
            150 => OCF_ERR_INSTALLED,
            151 => OCF_ERR_PERM,
            _ => OCF_ERR_GENERIC,
        },
        Standard::Lsb => {
            if (0..=7).contains(&code) {
                code
            } else {
                OCF_ERR_GENERIC
            }
        }
        // Fence agents: 0 is success; for status, 2 means "off" (reported as not running).
        Standard::Stonith => match (action, code) {
            (_, 0) => OCF_SUCCESS,
            ("status", 2) => OCF_NOT_RUNNING,
            _ => OCF_ERR_GENERIC,
        },
        _ => match code {
            0..=9 | 190 | 191 => code,
            _ => OCF_ERR_GENERIC,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_as_pacemaker() {
        assert_eq!(map_rc(Standard::Ocf, "start", 8), 8);
        assert_eq!(map_rc(Standard::Ocf, "start", 137), 1);
        assert_eq!(map_rc(Standard::Ocf, "monitor", 191), 191);
        assert_eq!(map_rc(Standard::Lsb, "status", 3), 7);
        assert_eq!(map_rc(Standard::Lsb, "status", 4), 1);
        assert_eq!(map_rc(Standard::Lsb, "status", 150), 5);
        assert_eq!(map_rc(Standard::Lsb, "start", 9), 1);
        assert_eq!(map_rc(Standard::Stonith, "status", 2), 7);
        assert_eq!(map_rc(Standard::Stonith, "off", 2), 1);
    }
}
