# Reference for tests/test_bias_ensemble.py: the step-function selection model's log-likelihood.
# metafor 3.8 selmodel (ML) on dat.hackshaw1998 and dat.bangertdrowns2004; the test evaluates
# bayes_se.selection_likelihood.log_likelihood at metafor's estimates and compares with logLik().
library(metafor)
out <- list()
add <- function(name, dat, steps) {
  res <- rma(yi, vi, data = dat, method = "ML")
  sel <- selmodel(res, type = "stepfun", steps = steps)
  out[[name]] <<- list(yi = sprintf("%.15g", dat$yi), vi = sprintf("%.15g", dat$vi),
                       steps = steps, beta = sprintf("%.15g", sel$beta[1]),
                       tau2 = sprintf("%.15g", sel$tau2), delta = sprintf("%.15g", sel$delta),
                       logLik = sprintf("%.15g", as.numeric(logLik(sel))))
}
add("hackshaw1998", dat.hackshaw1998, c(0.05, 0.10, 0.50, 1))
dat <- dat.bangertdrowns2004[!is.na(dat.bangertdrowns2004$yi), ]
add("bangertdrowns2004", dat, c(0.025, 1))
writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, pretty = TRUE), "selmodel_loglik.json")
