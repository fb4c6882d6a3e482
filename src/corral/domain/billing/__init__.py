"""Billing rules, pure: rate configuration, what an attempt is charged for, usage and cost, spend limits."""
