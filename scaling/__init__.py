"""How a network grows: compound coefficients, the official B0-B7 table, scaled families."""
from .compound import OFFICIAL, PAPER_COEFFICIENTS, Multipliers, apply, compound, official
from .family import Member, compound_family, format_table, member, official_family, write_members

__all__ = ["OFFICIAL", "PAPER_COEFFICIENTS", "Multipliers", "apply", "compound", "official", "Member",
           "compound_family", "format_table", "member", "official_family", "write_members"]
