# Reference numbers for tests/test_mediation_paths_freq.py: the bivariate random-effects model of
# reported mediation paths (a: X -> M, b: M -> Y given X), fitted by metafor 3.8-1
#   rma.mv(yi, V, mods = ~ path - 1, random = ~ path | study, struct = "UN", method = "REML" / "ML")
# on two simulated datasets, plus the delta-method SE and Wald CI of the indirect effect a * b from
# the fitted vcov, the average indirect effect a * b + rho tau_a tau_b with its delta-method SE from
# metafor's numerical Hessian of the variance components (cvvc = "varcov", numDeriv), and the
# univariate rma REML fit of c_prime.
#
# Data (simulated here, written with 15 significant digits and read back, so R and Python fit the
# same numbers):
#   paths_k20.csv  k = 20 trials reporting a, se_a, b, se_b (cov_ab = 0) and c_prime, se_c_prime
#   paths_k25.csv  k = 25 trials: 5 report only a, 2 only b, the rest a and b with a nonzero
#                  sampling covariance cov_ab; c_prime where b is reported
# Study paths: (a_i, b_i) ~ N((0.45, 0.35), T), tau = (0.15, 0.12), rho = 0.4 (k20) / -0.3 (k25);
# c'_i ~ N(0.10, 0.08^2); reported = true + N(0, se^2) with se ~ 1/sqrt(n), n in 60..300.
#
# Run from this folder: Rscript make_reference.R  (writes paths_k20.csv, paths_k25.csv,
# mediation_paths.json)
suppressPackageStartupMessages({library(metafor); library(jsonlite); library(MASS)})
num <- function(x) as.numeric(sprintf("%.15g", x))
f15 <- function(x) ifelse(is.na(x), "NA", sprintf("%.15g", x))

simulate <- function(k, seed, rho, only_a = integer(0), only_b = integer(0), cov_ab = FALSE) {
  set.seed(seed)
  n <- sample(60:300, k, replace = TRUE)
  tau <- c(0.15, 0.12)
  T <- diag(tau) %*% matrix(c(1, rho, rho, 1), 2) %*% diag(tau)
  ab <- mvrnorm(k, c(0.45, 0.35), T)
  se_a <- 1.2 / sqrt(n) * runif(k, 0.9, 1.1)
  se_b <- 1 / sqrt(n) * runif(k, 0.9, 1.1)
  r <- if (cov_ab) runif(k, -0.3, 0.3) else rep(0, k)
  cab <- r * se_a * se_b
  e <- t(sapply(seq_len(k), function(i)
    mvrnorm(1, c(0, 0), matrix(c(se_a[i]^2, cab[i], cab[i], se_b[i]^2), 2))))
  se_c <- 1.1 / sqrt(n) * runif(k, 0.9, 1.1)
  cp <- rnorm(k, 0.10, 0.08) + se_c * rnorm(k)
  d <- data.frame(study = sprintf("trial%02d", seq_len(k)), n = n,
                  a = ab[, 1] + e[, 1], se_a = se_a, b = ab[, 2] + e[, 2], se_b = se_b,
                  cov_ab = cab, c_prime = cp, se_c_prime = se_c)
  d[only_a, c("b", "se_b", "cov_ab", "c_prime", "se_c_prime")] <- NA
  d[only_b, c("a", "se_a", "cov_ab")] <- NA
  d
}

write_data <- function(d, file) {
  out <- d
  for (v in names(out)[-(1:2)]) out[[v]] <- f15(out[[v]])
  write.csv(out, file, row.names = FALSE, quote = FALSE, na = "NA")
  read.csv(file, stringsAsFactors = FALSE)
}

long_format <- function(d) {
  yi <- c(); path <- c(); study <- c(); blocks <- list()
  for (i in seq_len(nrow(d))) {
    has <- c(!is.na(d$a[i]), !is.na(d$b[i]))
    if (!any(has)) next
    cab <- ifelse(is.na(d$cov_ab[i]), 0, d$cov_ab[i])
    S <- matrix(c(d$se_a[i]^2, cab, cab, d$se_b[i]^2), 2)
    yi <- c(yi, c(d$a[i], d$b[i])[has])
    path <- c(path, c("a", "b")[has])
    study <- c(study, rep(d$study[i], sum(has)))
    blocks[[length(blocks) + 1]] <- S[has, has, drop = FALSE]
  }
  list(dat = data.frame(yi = yi, path = path, study = study), V = bldiag(blocks))
}

# metafor's default optimizers stop about 1e-5 (relative) short of the maximum on these flat
# likelihoods; each fit is run with four optimizers at tight tolerances and the one reaching the
# highest log-likelihood is kept (they agree to about 1e-7 in the estimates).
controls <- list(
  nelder_mead = list(optimizer = "optim", optmethod = "Nelder-Mead", reltol = 1e-15, maxit = 100000),
  bfgs = list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-15, maxit = 10000),
  bobyqa = list(optimizer = "bobyqa", rhoend = 1e-12, maxfun = 100000),
  newuoa = list(optimizer = "newuoa", rhoend = 1e-12, maxfun = 100000))

fit_one <- function(L, method, level = 0.95) {
  fits <- lapply(controls, function(ctrl)
    tryCatch(rma.mv(yi, L$V, mods = ~ path - 1, random = ~ path | study, struct = "UN",
                    data = L$dat, method = method, control = ctrl, cvvc = "varcov"),
             error = function(e) NULL))
  ll <- sapply(fits, function(r) if (is.null(r)) -Inf else as.numeric(logLik(r)))
  best <- names(controls)[which.max(ll)]
  res <- fits[[best]]
  a <- res$beta[1]; b <- res$beta[2]; vb <- res$vb
  crit <- qnorm(1 - (1 - level) / 2)
  ind <- a * b
  ind_se <- sqrt(b^2 * vb[1, 1] + a^2 * vb[2, 2] + 2 * a * b * vb[1, 2])
  # average indirect effect a b + sigma_ab, sigma_ab = rho tau_a tau_b = G[a, b]; var(sigma_ab) is
  # metafor's vvc (cvvc = "varcov": the inverse of numDeriv's Hessian of -logLik in
  # (tau^2.1, cov, tau^2.2), rows named so), taken as independent of the fixed effects
  # (block-diagonal information)
  t2 <- res$tau2; rho <- res$rho
  sab <- res$G[1, 2]
  var_sab <- res$vvc["cov", "cov"]
  avg_se <- sqrt(ind_se^2 + var_sab)
  list(method = method, k = res$k, coef_names = rownames(res$beta),
       beta = num(as.vector(res$beta)), se = num(res$se), zval = num(res$zval), pval = num(res$pval),
       ci_lower = num(res$ci.lb), ci_upper = num(res$ci.ub),
       vcov = lapply(seq_len(2), function(i) num(vb[i, ])),
       tau2 = num(t2), rho = num(rho), logLik = num(as.numeric(logLik(res))),
       QE = num(res$QE), QE_df = res$k - res$p, QE_p = num(res$QEp),
       QM = num(res$QM), QM_p = num(res$QMp),
       hessian = lapply(seq_len(3), function(i) num(res$hessian[i, ])),
       vvc = lapply(seq_len(3), function(i) num(res$vvc[i, ])),
       indirect = list(estimate = num(ind), se = num(ind_se),
                       ci_lower = num(ind - crit * ind_se), ci_upper = num(ind + crit * ind_se)),
       indirect_avg = list(estimate = num(ind + sab), sigma_ab = num(sab), var_sigma_ab = num(var_sab),
                           se = num(avg_se)),
       vvc_names = rownames(res$vvc), optimizer = best,
       logLik_by_optimizer = as.list(sapply(ll, num)))
}

fit_c <- function(d) {
  keep <- !is.na(d$c_prime)
  res <- rma(d$c_prime[keep], d$se_c_prime[keep]^2, method = "REML",
             control = list(threshold = 1e-12, maxiter = 10000))
  list(k = res$k, estimate = num(as.numeric(res$beta)), se = num(res$se), zval = num(res$zval),
       pval = num(res$pval), ci_lower = num(res$ci.lb), ci_upper = num(res$ci.ub), tau2 = num(res$tau2),
       QE = num(res$QE), QE_p = num(res$QEp))
}

d20 <- write_data(simulate(20, 16020, rho = 0.4), "paths_k20.csv")
d25 <- write_data(simulate(25, 16025, rho = -0.3, only_a = 1:5, only_b = 6:7, cov_ab = TRUE), "paths_k25.csv")

out <- list(metafor = as.character(packageVersion("metafor")), R = R.version.string,
            model = paste('rma.mv(yi, V, mods = ~ path - 1, random = ~ path | study, struct = "UN",',
                          'method = METHOD, control = CONTROL, cvvc = "varcov"), CONTROL the optimizer',
                          'of highest logLik among Nelder-Mead, BFGS, bobyqa, newuoa (see make_reference.R);',
                          'c_prime: rma(method = "REML", control = list(threshold = 1e-12))'),
            level = 0.95, datasets = list())
for (name in c("paths_k20", "paths_k25")) {
  d <- if (name == "paths_k20") d20 else d25
  L <- long_format(d)
  out$datasets[[name]] <- list(file = paste0(name, ".csv"),
                               REML = fit_one(L, "REML"), ML = fit_one(L, "ML"), c_prime = fit_c(d))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "mediation_paths.json")
