"""Validity-period rules shared by CAs and leaves."""

from __future__ import annotations

import datetime

# notBefore is set this far in the past so that relying parties whose clocks
# run a little behind accept a certificate the moment it is issued.
CLOCK_SKEW_BACKDATE = datetime.timedelta(minutes=5)
