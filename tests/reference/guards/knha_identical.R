# metafor's answer for Knapp-Hartung tests on effects the model fits exactly (RSS = 0):
# s2w = 0, so vb = 0: se = 0, t = Inf, p = 0, CI = [b, b], QM = NA (chol of a zero matrix fails).
# Run: Rscript knha_identical.R > knha_identical.json   (metafor 3.8-1, R 4.x)
suppressMessages(library(metafor))
num <- function(x) ifelse(is.na(x), "null", ifelse(is.infinite(x), ifelse(x > 0, "\"Inf\"", "\"-Inf\""),
                                                  formatC(x, digits = 10, format = "g")))
vec <- function(x) paste0("[", paste(sapply(x, num), collapse = ", "), "]")
fit_json <- function(r) {
  pr <- predict(r)
  paste0("{\"beta\": ", vec(c(r$beta)), ", \"se\": ", vec(r$se), ", \"tval\": ", vec(r$zval),
         ", \"pval\": ", vec(r$pval), ", \"ci_lb\": ", vec(r$ci.lb), ", \"ci_ub\": ", vec(r$ci.ub),
         ", \"tau2\": ", num(r$tau2), ", \"se_tau2\": ", num(r$se.tau2), ", \"I2\": ", num(r$I2),
         ", \"H2\": ", num(r$H2), ", \"QE\": ", num(r$QE), ", \"QEp\": ", num(r$QEp),
         ", \"QM\": ", num(r$QM), ", \"QMp\": ", num(r$QMp), ", \"s2w\": ", num(r$s2w),
         ", \"pi_lb\": ", vec(pr$pi.lb), ", \"pi_ub\": ", vec(pr$pi.ub), "}")
}
r1 <- rma(yi = c(.5, .5, .5), vi = c(.1, .1, .1), test = "knha")
x <- c(1, 2, 3, 4)
r2 <- rma(yi = c(.5, .5, .5, .5), vi = c(.1, .2, .1, .3), mods = ~ x, test = "knha")
cat("{\n\"metafor\": \"", as.character(packageVersion("metafor")), "\",\n",
    "\"intercept_only\": {\"yi\": [0.5, 0.5, 0.5], \"vi\": [0.1, 0.1, 0.1], \"fit\": ", fit_json(r1), "},\n",
    "\"meta_regression\": {\"yi\": [0.5, 0.5, 0.5, 0.5], \"vi\": [0.1, 0.2, 0.1, 0.3], \"x\": [1, 2, 3, 4], \"fit\": ",
    fit_json(r2), "}\n}\n", sep = "")
