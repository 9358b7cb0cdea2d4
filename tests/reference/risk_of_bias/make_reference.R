# Reference figures for tests/test_risk_of_bias.py: metafor 3.8-1 fits of the Metapsy self-guided
# depression data (data/metapsy_depression_selfguided.csv, ODC-By 1.0) by risk of bias.
# Run in this folder: Rscript make_reference.R   (writes metapsy_rob_metafor.csv)
suppressPackageStartupMessages(library(metafor))
stopifnot(packageVersion("metafor") == "3.8.1")
dat <- read.csv("../../../data/metapsy_depression_selfguided.csv")
ctrl <- list(threshold = 1e-12, maxiter = 1000)
dat$rob_not_low <- as.numeric(dat$rob < 4)
fits <- list(
  "all studies" = rma(yi, vi, data = dat, method = "REML", control = ctrl),
  "low risk only" = rma(yi, vi, data = dat, subset = rob >= 4, method = "REML", control = ctrl),
  "moderator low" = rma(yi, vi, mods = ~ rob_not_low, data = dat, method = "REML", control = ctrl),
  "moderator score" = rma(yi, vi, mods = ~ rob, data = dat, method = "REML", control = ctrl),
  "moderator levels" = rma(yi, vi, mods = ~ factor(rob), data = dat, method = "REML", control = ctrl))
rows <- do.call(rbind, lapply(names(fits), function(n) {
  f <- fits[[n]]
  data.frame(analysis = n, coef = rownames(f$beta), k = f$k,
             estimate = sprintf("%.15g", f$beta[, 1]), ci_lower = sprintf("%.15g", f$ci.lb),
             ci_upper = sprintf("%.15g", f$ci.ub), tau2 = sprintf("%.15g", f$tau2))
}))
write.csv(rows, "metapsy_rob_metafor.csv", row.names = FALSE, quote = TRUE)
