"""The generative model behind the synthetic tables, one block of enterprises at a time.

Every enterprise draws a few latent traits:

- ``fin``: financial strength, seen by both parties (deposits and loan size at the bank;
  tax paid, real estate and enforcement cases at the holder);
- ``ops``: operating health, seen mostly by the holder (utility use and its recent trend,
  social insurance payments, tax and utility arrears);
- ``cmp``: compliance, seen by the holder (tax rating, penalties, lists, court records);
- ``rel``: conduct towards this bank, seen by the bank (delinquencies, line utilisation).

The four share a common factor, so each party's features also say something about the
traits it cannot see. The default probability is a logistic function of all of them plus
age, entity type and industry, which is why the holder's features lift a bank-only model:
they measure ``ops`` and ``cmp``, which the bank sees only through the common factor.

Categorical columns come out as integer codes into :data:`schema.CATEGORIES` (-1 missing).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .schema import INDUSTRIES, REGION_CODES

ENTERPRISE, INDIVIDUAL, COOP = 0, 1, 2
_TYPE_SHARES = (0.55, 0.38, 0.07)
_IND = {name: i for i, name in enumerate(INDUSTRIES)}

# industry mix per entity type, in INDUSTRIES order
_INDUSTRY_SHARES = np.array([
    [.05, .22, .10, .22, .06, .05, .08, .03, .08, .05, .03, .03],  # enterprise
    [.04, .05, .03, .42, .08, .20, .01, .00, .03, .01, .11, .02],  # individual business
    [.85, .05, .00, .04, .02, .02, .00, .00, .01, .01, .00, .00],  # farmer cooperative
])
# additive default log-odds of each industry (construction and real estate run hotter)
_INDUSTRY_RISK = np.array([.25, 0., .35, .10, .15, .25, -.15, .45, .05, -.20, .10, .20])
# electricity (kWh per employee-month), water and gas intensities per industry
_POWER_INTENSITY = np.array([300, 900, 250, 150, 200, 400, 120, 80, 100, 110, 180, 160])
_WATER_INTENSITY = np.array([40, 12, 8, 3, 3, 25, 2, 2, 2, 2, 10, 6])
_GAS_SHARE = np.array([.15, .45, .10, .15, .10, .85, .05, .05, .05, .10, .40, .20])
# weights of REGION_CODES: city centres and the Quanzhou private-economy belt dominate
_REGION_WEIGHTS = np.array([8, 6, 7, 3, 6, 4, 3, 9, 4, 8, 5, 4, 3, 3, 4, 4, 5, 5, 9, 5, 4,
                            3, 3, 3], dtype=float)
_REGION_WEIGHTS /= _REGION_WEIGHTS.sum()
_TYPE_RISK = np.array([0.0, 0.30, 0.15])

# log-normal age (years) and log-headcount by entity type
_AGE_LOG_MEAN = np.log([6.5, 4.5, 6.0])
_AGE_LOG_SD = np.array([0.85, 0.9, 0.55])
_SIZE_MEAN = np.log([15.0, 2.5, 9.0])
_SIZE_SD = np.array([1.0, 0.5, 0.7])

# intercept of the default log-odds; sets the default rate near 4.5 %
_INTERCEPT = -4.5



@dataclass
class Population:
    """Latent and registration traits of the enterprises of one block."""

    etype: np.ndarray      # int8 index into ENTERPRISE_TYPES
    industry: np.ndarray   # int8 index into INDUSTRIES
    region: np.ndarray     # int8 index into REGION_CODES
    age: np.ndarray        # years since establishment
    size: np.ndarray       # log headcount, centred within the entity type
    headcount: np.ndarray  # true headcount (>= 1)
    fin: np.ndarray
    ops: np.ndarray
    cmp: np.ndarray
    rel: np.ndarray
    default: np.ndarray    # bool, default within the performance window

    def take(self, idx: np.ndarray) -> Population:
        return Population(**{k: v[idx] for k, v in self.__dict__.items()})


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def draw_population(rng: np.random.Generator, m: int) -> Population:
    """Draw ``m`` enterprises and their default outcomes."""
    etype = rng.choice(3, size=m, p=_TYPE_SHARES).astype(np.int8)
    cdf = np.cumsum(_INDUSTRY_SHARES, axis=1)
    industry = (rng.random(m)[:, None] > cdf[etype]).sum(axis=1).clip(0, len(INDUSTRIES) - 1)
    region = rng.choice(len(REGION_CODES), size=m, p=_REGION_WEIGHTS)
    age = np.exp(rng.normal(_AGE_LOG_MEAN[etype], _AGE_LOG_SD[etype])).clip(0.05, 40.0)
    age = np.round(age, 2)
    size = rng.normal(0.0, _SIZE_SD[etype])
    headcount = np.maximum(1, np.round(np.exp(_SIZE_MEAN[etype] + size)))
    common = rng.standard_normal(m)
    e = rng.standard_normal((4, m))
    fin = 0.55 * common + 0.835 * e[0]
    ops = 0.50 * common + 0.866 * e[1]
    cmp = 0.40 * common + 0.917 * e[2]
    rel = 0.45 * common + 0.893 * e[3]
    logit = (_INTERCEPT - 0.60 * fin - 0.80 * ops - 0.65 * cmp - 0.55 * rel
             + _INDUSTRY_RISK[industry] + _TYPE_RISK[etype]
             + 0.8 * np.exp(-age / 1.5) - 0.15 * size)
    default = rng.random(m) < _sigmoid(logit)
    return Population(etype, industry.astype(np.int8), region.astype(np.int8), age, size,
                      headcount, fin, ops, cmp, rel, default)


def bank_features(rng: np.random.Generator, p: Population) -> dict[str, np.ndarray]:
    """What the bank knows of its borrowers (the label is added by the caller)."""
    k = len(p.age)
    base = np.log([800e3, 150e3, 400e3])[p.etype]
    amount = np.exp(base + 0.45 * p.size + 0.25 * p.fin + rng.normal(0, 0.45, k))
    loan_amount = (np.round(amount / 1000) * 1000).clip(10e3, 10e6)
    term = rng.choice(np.array([6, 12, 24, 36, 60], dtype=np.int32), size=k,
                      p=[.10, .45, .20, .15, .10])
    has_prior = rng.random(k) < _sigmoid(0.1 + 0.45 * np.log(p.age + 0.5) + 0.2 * p.fin)
    delinquencies = np.where(
        has_prior, rng.poisson(np.exp(-1.8 - 0.75 * p.rel - 0.3 * p.fin)), 0
    ).astype(np.int32)
    has_line = rng.random(k) < _sigmoid(-0.4 + 0.8 * has_prior + 0.3 * p.fin)
    utilisation = _sigmoid(-0.2 - 0.7 * p.rel - 0.45 * p.fin + rng.normal(0, 0.8, k))
    utilisation = np.where(has_line, np.round(utilisation, 3), np.nan)
    has_deposit = rng.random(k) < 0.88
    deposit = np.exp(10.3 + 0.7 * p.size + 0.45 * p.fin + 0.15 * p.ops
                     + rng.normal(0, 1.0, k) + np.log([1.0, 0.2, 0.5])[p.etype])
    deposit = np.where(has_deposit, np.round(deposit, 2), np.nan)
    # the first account is opened some time after establishment
    account_age = np.floor(p.age * 12 * rng.beta(2.0, 1.3, k)).astype(np.int32)
    revenue = np.exp(np.log(loan_amount) + 1.0 + 0.2 * p.fin + rng.normal(0, 0.5, k))
    declared = rng.random(k) >= np.array([0.10, 0.40, 0.25])[p.etype]
    revenue = np.where(declared, np.round(revenue, -3), np.nan)
    # collateral: multinomial logit over COLLATERAL_TYPES via Gumbel-max
    scores = np.stack([
        np.zeros(k),
        -0.6 + 0.6 * p.fin + 0.3 * p.size + 0.5 * (p.etype == ENTERPRISE),
        -1.4 + 1.2 * (p.industry == _IND["manufacturing"]) + 0.3 * p.size,
        -1.8 + 0.9 * (p.industry == _IND["wholesale_retail"]) + 0.2 * p.fin,
        -0.6 + 0.3 * (p.etype != ENTERPRISE) - 0.2 * p.fin,
    ]) + rng.gumbel(size=(5, k))
    collateral = scores.argmax(axis=0).astype(np.int8)
    # risk-based pricing on the bank's own view of the borrower
    own_view = -0.55 * p.rel - 0.4 * p.fin + rng.normal(0, 0.6, k)
    rate = 4.05 + 0.5 * own_view + 0.3 * (collateral == 0) + rng.normal(0, 0.2, k)
    return {
        "loan_amount": loan_amount,
        "loan_term_months": term,
        "interest_rate_pct": np.round(rate.clip(3.0, 15.0), 2),
        "collateral_type": collateral,
        "has_prior_loan": has_prior.astype(np.int8),
        "past_delinquencies": delinquencies,
        "credit_line_utilisation": utilisation,
        "deposit_balance": deposit,
        "account_age_months": account_age,
        "declared_annual_revenue": revenue,
    }


def holder_features(rng: np.random.Generator, p: Population) -> dict[str, np.ndarray]:
    """What the credit-data holder has on each enterprise: registration, tax, social
    insurance, utilities, administrative and judicial records, ratings and the rest."""
    cols = {
        "enterprise_type": p.etype,
        "industry": p.industry,
        "region_code": p.region,
        "enterprise_age_years": p.age,
    }
    cols.update(_registration(rng, p))
    cols.update(_tax(rng, p))
    cols.update(_social_insurance(rng, p))
    cols.update(_utilities(rng, p))
    cols.update(_administrative(rng, p))
    cols.update(_judicial(rng, p))
    cols.update(_other(rng, p))
    return cols


def _bernoulli(rng, probability) -> np.ndarray:
    return rng.random(len(probability)) < probability


def _missing(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, np.nan, values.astype(np.float64))


def _registration(rng, p):
    k = len(p.age)
    log_capital = np.log([1.0e6, 5.0e4, 5.0e5])[p.etype] + 0.7 * p.size + 0.2 * p.fin \
        + rng.normal(0, 1.0, k)
    capital = np.round(np.exp(log_capital), -3).clip(1e3, 5e9)
    # individual businesses declare capital only on some registration forms
    no_capital = rng.random(k) < np.array([0.02, 0.25, 0.05])[p.etype]
    return {"registered_capital": _missing(capital, no_capital)}


def _tax(rng, p):
    k = len(p.age)
    score = 0.9 * p.cmp + 0.5 * p.fin + 0.25 * np.log(p.age) + rng.normal(0, 0.6, k)
    # A, B, C, D by score quantiles of a typical population; M for taxpayers under 1 year
    rating = np.digitize(score, [-1.6, -1.0, 0.9])  # 0: D, 1: C, 2: B, 3: A
    rating = np.array([4, 3, 1, 0], dtype=np.int8)[rating]  # -> TAX_RATINGS indices
    rating = np.where(p.age < 1.0, 2, rating).astype(np.int8)
    # rated once a year: the youngest are not rated yet; many individual businesses pay
    # under fixed-quota assessment (定期定额) and are never rated
    unrated = (p.age < 0.4) | (rng.random(k) < np.array([0.05, 0.65, 0.35])[p.etype])
    rating = np.where(unrated, -1, rating).astype(np.int8)
    abnormal = _bernoulli(rng, _sigmoid(-4.6 - 1.0 * p.cmp - 0.6 * p.ops))
    has_arrears = _bernoulli(rng, _sigmoid(-3.0 - 0.8 * p.fin - 0.6 * p.ops) + 0.3 * abnormal)
    arrears = np.where(has_arrears, np.round(np.exp(rng.normal(9.5, 1.3, k)), 2), 0.0)
    paid = np.exp(np.log([1.5e5, 6e3, 3e4])[p.etype] + 0.9 * p.size + 0.45 * p.fin
                  + 0.35 * p.ops + rng.normal(0, 0.6, k))
    # tax paid is shared only by the enterprise's authorisation, and needs a full year
    unauthorised = (p.age < 1.0) | (rng.random(k) < 0.2)
    return {
        "tax_credit_rating": rating,
        "abnormal_taxpayer": abnormal.astype(np.int8),
        "tax_arrears": arrears,
        "tax_paid_last_year": _missing(np.round(paid, 2), unauthorised),
    }


def _social_insurance(rng, p):
    k = len(p.age)
    registered = rng.random(k) >= np.array([0.06, 0.60, 0.45])[p.etype]
    share = _sigmoid(0.8 + 0.5 * p.ops + 0.3 * p.fin + rng.normal(0, 0.4, k))
    insured = np.maximum(1, np.round(p.headcount * share))
    months_possible = np.minimum(12, np.floor(p.age * 12)).astype(np.int64)
    miss_rate = _sigmoid(-3.2 - 1.2 * p.ops - 0.5 * p.fin)
    months = months_possible - rng.binomial(months_possible, miss_rate)
    in_arrears = _bernoulli(rng, _sigmoid(-3.4 - 1.1 * p.ops - 0.5 * p.fin))
    # provident fund: common at established enterprises, rare elsewhere
    has_fund = registered & _bernoulli(
        rng, _sigmoid(np.array([0.4, -2.2, -1.8])[p.etype] + 0.6 * p.fin + 0.4 * p.size))
    fund = np.round(insured * rng.beta(4, 2, k))
    return {
        "insured_headcount": _missing(insured, ~registered),
        "social_insurance_months_paid": _missing(months, ~registered),
        "social_insurance_arrears": _missing(in_arrears, ~registered),
        "provident_fund_headcount": _missing(fund, ~has_fund),
    }


def _utilities(rng, p):
    k = len(p.age)
    # usage falls before a default: the last 3 months move with operating health
    trend = 0.12 * p.ops + rng.normal(-0.02, 0.08, k)
    # the tail of failing firms: a sharp recent drop
    trend = np.where(p.ops < -1.5, trend - 0.25 * rng.random(k), trend)
    staff = p.headcount

    def usage(intensity, noise):
        earlier = staff * intensity * np.exp(rng.normal(0, noise, k))
        recent = earlier * np.exp(trend + rng.normal(0, 0.05, k))
        return np.round(recent, 1), np.round((earlier + recent) / 2, 1)

    power_3m, power_6m = usage(_POWER_INTENSITY[p.industry], 0.5)
    water_3m, water_6m = usage(_WATER_INTENSITY[p.industry], 0.6)
    gas_3m, gas_6m = usage(_POWER_INTENSITY[p.industry] * 0.08, 0.6)
    # accounts are matched to USCCs only partly (a landlord's meter, a shared site)
    no_power = rng.random(k) < np.array([0.08, 0.20, 0.15])[p.etype]
    no_water = no_power | (rng.random(k) < 0.10)
    no_gas = rng.random(k) >= _GAS_SHARE[p.industry] * np.array([1.0, 0.7, 0.5])[p.etype]
    young = p.age < 0.5  # no six-month history yet
    arrears = _bernoulli(rng, _sigmoid(-3.1 - 1.0 * p.ops - 0.6 * p.fin))
    months = np.where(arrears, 1 + rng.poisson(np.exp(0.2 - 0.5 * p.ops)), 0)
    no_utility = no_power & no_water & no_gas
    return {
        "water_m3_mean_3m": _missing(water_3m, no_water),
        "water_m3_mean_6m": _missing(water_6m, no_water | young),
        "electricity_kwh_mean_3m": _missing(power_3m, no_power),
        "electricity_kwh_mean_6m": _missing(power_6m, no_power | young),
        "gas_m3_mean_3m": _missing(gas_3m, no_gas),
        "gas_m3_mean_6m": _missing(gas_6m, no_gas | young),
        "utility_arrears_flag": _missing(arrears, no_utility),
        "utility_months_in_arrears": _missing(months, no_utility),
    }


def _administrative(rng, p):
    k = len(p.age)
    licences = rng.poisson(np.exp(0.2 + 0.25 * p.size + 0.1 * np.log1p(p.age))
                           * np.array([1.0, 0.6, 0.8])[p.etype])
    penalties = rng.poisson(np.exp(-2.3 - 0.8 * p.cmp + 0.25 * p.size))
    fine_each = np.exp(rng.normal(8.0, 1.2, k))
    fines = np.round(penalties * fine_each, 2)
    enforcement = rng.poisson(np.exp(-3.6 - 0.8 * p.cmp - 0.4 * p.fin))
    abnormal_list = _bernoulli(rng, _sigmoid(-3.4 - 0.9 * p.cmp - 0.7 * p.ops))
    blacklist = _bernoulli(rng, _sigmoid(-6.2 - 1.2 * p.cmp - 0.6 * p.fin))
    redlist = _bernoulli(rng, _sigmoid(-3.4 + 0.8 * p.cmp + 0.3 * p.fin + 0.3 * p.size)
                         * (p.etype == ENTERPRISE))
    return {
        "licences_held": licences.astype(np.int32),
        "admin_penalty_count": penalties.astype(np.int32),
        "admin_penalty_total_fine": fines,
        "admin_enforcement_count": enforcement.astype(np.int32),
        "abnormal_operation_list": abnormal_list.astype(np.int8),
        "blacklist": blacklist.astype(np.int8),
        "redlist": redlist.astype(np.int8),
    }


def _judicial(rng, p):
    judgements = rng.poisson(np.exp(-2.5 - 0.6 * p.fin - 0.4 * p.cmp + 0.3 * p.size))
    enforcement = rng.poisson(np.exp(-3.3 - 0.9 * p.fin - 0.4 * p.cmp - 0.3 * p.ops))
    dishonest = _bernoulli(rng, _sigmoid(-5.6 - 1.3 * p.fin - 0.7 * p.cmp - 0.4 * p.ops)
                           + 0.05 * (enforcement > 0))
    return {
        "court_judgements_as_defendant": judgements.astype(np.int32),
        "enforcement_cases": enforcement.astype(np.int32),
        "dishonest_debtor": dishonest.astype(np.int8),
    }


def _other(rng, p):
    k = len(p.age)
    # environmental ratings cover key polluting units, mostly manufacturers
    rated = rng.random(k) < np.where(p.industry == _IND["manufacturing"], 0.35, 0.02)
    env_score = 0.8 * p.cmp + rng.normal(0, 0.6, k)
    env = np.array([4, 3, 2, 1, 0], dtype=np.int8)[np.digitize(env_score, [-2.0, -1.4, -0.5,
                                                                            0.8])]
    env = np.where(rated, env, -1).astype(np.int8)
    owns = _bernoulli(rng, _sigmoid(-1.2 + 0.8 * p.size + 0.5 * p.fin
                                    + np.array([0.4, -0.8, 0.0])[p.etype]))
    value = np.round(np.exp(rng.normal(14.0 + 0.5 * p.size, 0.8)), -3)
    mortgaged = owns & _bernoulli(rng, _sigmoid(-0.3 - 0.6 * p.fin))
    # real-estate registries are not yet shared in every county
    unshared = rng.random(k) < 0.08
    tech_industry = np.isin(p.industry, [_IND["information_technology"],
                                         _IND["scientific_technical_services"],
                                         _IND["manufacturing"]])
    high_tech = (p.etype == ENTERPRISE) & tech_industry & _bernoulli(
        rng, _sigmoid(-2.4 + 0.5 * p.fin + 0.3 * p.size + 0.2 * p.cmp))
    support = np.where(high_tech & (rng.random(k) < 0.5),
                       np.round(np.exp(rng.normal(12.0, 1.0, k)), -2), 0.0)
    support = np.where(~high_tech & (rng.random(k) < 0.01), np.round(np.exp(
        rng.normal(10.5, 0.8, k)), -2), support)
    agri = p.industry == _IND["agriculture"]
    new_agri = _bernoulli(rng, np.where(p.etype == COOP, 0.6, np.where(agri, 0.25, 0.0)))
    bids = rng.poisson(np.exp(-2.6 + 0.6 * p.size + 0.3 * p.cmp) * (p.etype == ENTERPRISE))
    return {
        "environmental_credit_rating": env,
        "real_estate_registered_value": _missing(np.where(owns, value, 0.0), unshared),
        "real_estate_mortgaged": _missing(mortgaged, unshared),
        "high_tech_enterprise": high_tech.astype(np.int8),
        "rd_support_received": support,
        "new_agricultural_operator": new_agri.astype(np.int8),
        "gov_procurement_bids_won": bids.astype(np.int32),
    }
