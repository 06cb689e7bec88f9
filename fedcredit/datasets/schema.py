"""Columns of the synthetic bank and holder tables: kinds, categories and published labels.

One place defines every column so that the generator, the CSV writer and the CSV reader
agree on dtypes: a table read back from CSV equals the one generated in memory.

Kinds and their pandas dtypes:

- ``id``: the USCC, ``str``;
- ``category``: pandas ``category`` with the fixed categories below (missing = NaN);
- ``flag``: ``int8`` 0/1, never missing (the source knows the absence of a record);
- ``count``: ``int32``, never missing;
- ``float``: ``float64``, NaN where the source has no record (amounts, usage, nullable
  counts and nullable flags).
"""
from __future__ import annotations

ENTERPRISE_TYPES = ("enterprise", "individual_business", "farmer_coop")
#: USCC position 2 of each enterprise type (企业 1, 个体工商户 2, 农民专业合作社 3)
ENTERPRISE_TYPE_CODES = ("1", "2", "3")

#: sections of GB/T 4754 (national industry classification) seen among small borrowers
INDUSTRIES = (
    "agriculture",
    "manufacturing",
    "construction",
    "wholesale_retail",
    "transport_logistics",
    "accommodation_catering",
    "information_technology",
    "real_estate",
    "leasing_business_services",
    "scientific_technical_services",
    "resident_services",
    "culture_sports_entertainment",
)

#: county-level divisions of Fujian province (GB/T 2260), the registered region
REGION_CODES = (
    "350102", "350103", "350104", "350105", "350111", "350121", "350181",  # Fuzhou
    "350203", "350205", "350206", "350211", "350212", "350213",  # Xiamen
    "350302", "350304",  # Putian
    "350502", "350503", "350581", "350582", "350583",  # Quanzhou
    "350602", "350702", "350802", "350902",  # Zhangzhou, Nanping, Longyan, Ningde
)

#: tax credit rating (纳税信用等级), best first; M is given to newly established taxpayers
TAX_RATINGS = ("A", "B", "M", "C", "D")
#: enterprise environmental credit rating (企业环境信用评价), best first
ENVIRONMENTAL_RATINGS = ("green", "blue", "yellow", "red", "black")
COLLATERAL_TYPES = ("none", "real_estate", "equipment", "receivables", "guarantee")

CATEGORIES = {
    "enterprise_type": ENTERPRISE_TYPES,
    "industry": INDUSTRIES,
    "region_code": REGION_CODES,
    "tax_credit_rating": TAX_RATINGS,
    "environmental_credit_rating": ENVIRONMENTAL_RATINGS,
    "collateral_type": COLLATERAL_TYPES,
}

BANK_COLUMNS = {
    "uscc": "id",
    "label": "flag",
    "loan_amount": "float",
    "loan_term_months": "count",
    "interest_rate_pct": "float",
    "collateral_type": "category",
    "has_prior_loan": "flag",
    "past_delinquencies": "count",
    "credit_line_utilisation": "float",
    "deposit_balance": "float",
    "account_age_months": "count",
    "declared_annual_revenue": "float",
}

HOLDER_COLUMNS = {
    "uscc": "id",
    # registration
    "enterprise_type": "category",
    "industry": "category",
    "region_code": "category",
    "registered_capital": "float",
    "enterprise_age_years": "float",
    # tax
    "tax_credit_rating": "category",
    "abnormal_taxpayer": "flag",
    "tax_arrears": "float",
    "tax_paid_last_year": "float",
    # social insurance and housing provident fund
    "insured_headcount": "float",
    "social_insurance_months_paid": "float",
    "social_insurance_arrears": "float",
    "provident_fund_headcount": "float",
    # utilities
    "water_m3_mean_3m": "float",
    "water_m3_mean_6m": "float",
    "electricity_kwh_mean_3m": "float",
    "electricity_kwh_mean_6m": "float",
    "gas_m3_mean_3m": "float",
    "gas_m3_mean_6m": "float",
    "utility_arrears_flag": "float",
    "utility_months_in_arrears": "float",
    # administrative management
    "licences_held": "count",
    "admin_penalty_count": "count",
    "admin_penalty_total_fine": "float",
    "admin_enforcement_count": "count",
    "abnormal_operation_list": "flag",
    "blacklist": "flag",
    "redlist": "flag",
    # judicial
    "court_judgements_as_defendant": "count",
    "enforcement_cases": "count",
    "dishonest_debtor": "flag",
    # environment, real estate, science and technology, agriculture, procurement
    "environmental_credit_rating": "category",
    "real_estate_registered_value": "float",
    "real_estate_mortgaged": "float",
    "high_tech_enterprise": "flag",
    "rd_support_received": "float",
    "new_agricultural_operator": "flag",
    "gov_procurement_bids_won": "count",
}

#: published label of each holder column (English with the Chinese term)
HOLDER_FEATURE_LABELS: dict[str, str] = {
    "uscc": "Unified social credit code (统一社会信用代码)",
    "enterprise_type": "Market entity type (市场主体类型: 企业 / 个体工商户 / 农民专业合作社)",
    "industry": "Industry (所属行业, GB/T 4754)",
    "region_code": "Registered region (登记机关所在行政区划代码)",
    "registered_capital": "Registered capital, yuan (注册资本)",
    "enterprise_age_years": "Years since establishment (成立年限)",
    "tax_credit_rating": "Tax credit rating (纳税信用等级)",
    "abnormal_taxpayer": "Abnormal taxpayer (非正常户)",
    "tax_arrears": "Tax arrears, yuan (欠税金额)",
    "tax_paid_last_year": "Tax paid last year, yuan (上年度纳税总额, by authorisation)",
    "insured_headcount": "Social insurance insured headcount (社保参保人数)",
    "social_insurance_months_paid": "Social insurance months paid of the last 12 (近12个月社保缴费月数)",
    "social_insurance_arrears": "Social insurance in arrears (社保欠缴)",
    "provident_fund_headcount": "Housing provident fund contributors (住房公积金缴存人数)",
    "water_m3_mean_3m": "Water use, mean m³ per month, last 3 months (近3个月月均用水量)",
    "water_m3_mean_6m": "Water use, mean m³ per month, last 6 months (近6个月月均用水量)",
    "electricity_kwh_mean_3m": "Electricity use, mean kWh per month, last 3 months (近3个月月均用电量)",
    "electricity_kwh_mean_6m": "Electricity use, mean kWh per month, last 6 months (近6个月月均用电量)",
    "gas_m3_mean_3m": "Gas use, mean m³ per month, last 3 months (近3个月月均用气量)",
    "gas_m3_mean_6m": "Gas use, mean m³ per month, last 6 months (近6个月月均用气量)",
    "utility_arrears_flag": "Utility bills currently in arrears (水电气欠费)",
    "utility_months_in_arrears": "Months of utility arrears (水电气欠费月数)",
    "licences_held": "Administrative licences held (行政许可数)",
    "admin_penalty_count": "Administrative penalties (行政处罚次数)",
    "admin_penalty_total_fine": "Administrative penalty fines, yuan (行政处罚罚没金额)",
    "admin_enforcement_count": "Administrative enforcement records (行政强制记录数)",
    "abnormal_operation_list": "On the abnormal-operation list (经营异常名录)",
    "blacklist": "On a blacklist for serious dishonesty (严重失信主体名单)",
    "redlist": "On a red list for trustworthiness (守信红名单)",
    "court_judgements_as_defendant": "Court judgements as defendant (涉诉裁判文书, 被告)",
    "enforcement_cases": "Enforcement cases as the person subject to enforcement (被执行人案件)",
    "dishonest_debtor": "Dishonest judgement debtor (失信被执行人)",
    "environmental_credit_rating": "Environmental credit rating (企业环境信用评价等级)",
    "real_estate_registered_value": "Registered real estate, appraised value in yuan (不动产登记)",
    "real_estate_mortgaged": "Registered real estate under mortgage (不动产抵押登记)",
    "high_tech_enterprise": "Certified high-tech enterprise (高新技术企业)",
    "rd_support_received": "R&D support received, yuan (科技研发补助)",
    "new_agricultural_operator": "New-type agricultural operator (新型农业经营主体)",
    "gov_procurement_bids_won": "Government procurement and project bids won (政府采购及项目中标数)",
}

#: label of each bank column, for notebooks and reports
BANK_FEATURE_LABELS: dict[str, str] = {
    "uscc": "Unified social credit code (统一社会信用代码)",
    "label": "Default within the 12-month performance window",
    "loan_amount": "Loan amount, yuan",
    "loan_term_months": "Loan term, months",
    "interest_rate_pct": "Interest rate, % per year",
    "collateral_type": "Collateral type",
    "has_prior_loan": "Had a loan with the bank before",
    "past_delinquencies": "Past delinquencies (30+ days) with the bank",
    "credit_line_utilisation": "Utilisation of the bank credit line (missing: no line)",
    "deposit_balance": "Average deposit balance, yuan (missing: no deposit account)",
    "account_age_months": "Months since the first account at the bank",
    "declared_annual_revenue": "Annual revenue declared in the application, yuan",
}


def pandas_dtypes(columns: dict[str, str]) -> dict:
    """Column -> pandas dtype for a column-kind mapping (categories fixed, see module)."""
    import pandas as pd

    dtypes = {}
    for name, kind in columns.items():
        if kind == "id":
            dtypes[name] = "str"
        elif kind == "category":
            dtypes[name] = pd.CategoricalDtype(list(CATEGORIES[name]), ordered=False)
        else:
            dtypes[name] = {"flag": "int8", "count": "int32", "float": "float64"}[kind]
    return dtypes
