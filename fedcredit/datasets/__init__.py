"""(temporary)"""
from .synthetic import make_credit_data, write_credit_data, read_credit_data
